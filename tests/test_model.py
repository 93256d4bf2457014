"""The gated model against ESPnet's dense one: loading, equivalence, skipping, training."""

import numpy as np
import pytest
import torch
from conftest import build, context_ids, speech_batch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.tasks import s2t as espnet_s2t

from espnet_gated.adapter import GatedDecoderScorer
from espnet_gated.compat import BatchBeamSearch, subsequent_mask
from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES
from espnet_gated.method.model import GatedESPnetS2TModel
from espnet_gated.plugin.tasks import GatedS2TTask, count_updates, preprocessor_defaults
from espnet_gated.plugin.weights import GATING_STATE


def test_espnets_own_parser_takes_the_registered_names_and_refuses_others():
    parser = espnet_s2t.S2TTask.get_parser()  # ESPnet's, not ours: the names come from its class choices
    names = ["--encoder", "gated_e_branchformer", "--decoder", "gated_transformer", "--model", "gated_espnet"]
    args = parser.parse_args([*names, "--preprocessor", "s2t_natural_length"])
    assert (args.encoder, args.decoder, args.model, args.preprocessor) == (
        "gated_e_branchformer",
        "gated_transformer",
        "gated_espnet",
        "s2t_natural_length",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--encoder", "gated_conformer"])


def test_speech_length_null_keeps_each_utterance_at_its_own_length(vocab):
    """``preprocessor: s2t`` with ``speech_length: null``: ESPnet's task builds our registered preprocessor,
    which keeps the waveform as it is, where ESPnet's pads it to ``speech_length``."""
    from conftest import model_args

    args = model_args(vocab["token_list"], preprocessor="s2t", token_type="bpe", bpemodel=str(vocab["bpemodel"]))
    data = {
        "speech": np.zeros(20800, dtype=np.float32),
        "text": "<deu><asr><notimestamps> hallo welt",
        "text_prev": "<na>",
        "text_ctc": "hallo welt",
    }
    lengths = {}
    for speech_length in (None, 2):
        args.preprocessor_conf = {**preprocessor_defaults(), "speech_length": speech_length, "time_apply_prob": 1.0}
        preprocess = GatedS2TTask.build_preprocess_fn(args, train=False)
        lengths[speech_length] = preprocess("u1", dict(data))["speech"].shape[0]
    assert lengths == {None: 20800, 2: 32000}


def test_espnet_s2t_task_builds_the_gated_model(vocab):
    from conftest import model_args

    model = espnet_s2t.S2TTask.build_model(model_args(vocab["token_list"]))
    assert isinstance(model, GatedESPnetS2TModel)
    assert len(model.gate_layout) == 3 * 4 + 3 * 3


def test_dense_state_dict_loads_with_only_gate_predictor_keys_missing(vocab):
    dense = build(vocab["token_list"], dense=True)
    gated = build(vocab["token_list"])
    assert type(dense) is ESPnetS2TModel
    dense_keys, gated_keys = set(dense.state_dict()), set(gated.state_dict())
    predictor_keys = {f"gate_predictor.{k}" for k in gated.gate_predictor.state_dict()}
    predictor_keys |= {f"sparsity_controller.{k}" for k in gated.sparsity_controller.state_dict()}
    assert predictor_keys == {k for k in gated_keys if k.startswith(GATING_STATE)}
    assert predictor_keys and gated_keys - dense_keys == predictor_keys
    assert dense_keys - gated_keys == set()
    result = gated.load_state_dict(dense.state_dict(), strict=False)
    assert set(result.missing_keys) == predictor_keys
    assert result.unexpected_keys == []
    for k, v in dense.state_dict().items():
        assert torch.equal(gated.state_dict()[k], v), k


def _att_inputs(model, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    tl = model.token_list
    words = torch.randint(11, len(tl) - 3, (batch, 6), generator=g)
    prefix = context_ids(model, [("deu", "asr"), ("fra", "st_eng"), ("ita", "asr"), ("eng", "asr")][:batch])
    notime = torch.full((batch, 1), tl.index("<notimestamps>"))
    text = torch.cat([prefix, notime, words], 1)
    lengths = torch.full((batch,), text.size(1))
    na = torch.full((batch, 1), tl.index("<na>"))
    return dict(
        text=text,
        text_lengths=lengths,
        text_prev=na,
        text_prev_lengths=torch.ones(batch, dtype=torch.long),
        text_ctc=words,
        text_ctc_lengths=torch.full((batch,), words.size(1)),
    )


def test_predicted_gates_start_open_at_inference(dense_and_gated):
    _, gated = dense_and_gated
    speech, lengths = speech_batch([16000, 9000])
    with torch.no_grad():
        _, _, gates = gated.encode_gated(speech, lengths, context=context_ids(gated, [("deu", "asr"), ("eng", "asr")]))
    assert gates.enc.min() == 1 and gates.dec.min() == 1


def _count_calls(model):
    """Forward-hook call counters for every gateable module: a module counts as executed
    when it or any of its submodules runs (the decoder's cached cross-attention calls the
    projections of ``src_attn`` directly)."""
    counts, handles = {}, []
    for side, layers, names in (
        ("enc", model.encoder.encoders, ENCODER_MODULES),
        ("dec", model.decoder.decoders, DECODER_MODULES),
    ):
        for i, layer in enumerate(layers):
            for name in names:
                key = (side, i, name)
                counts[key] = 0

                def hook(*_, key=key):
                    counts[key] += 1

                # only submodules with their own weights: ESPnet shares activation modules across layers
                owned = [m for m in getattr(layer, name).modules() if list(m.parameters(recurse=False))]
                handles += [m.register_forward_hook(hook) for m in owned]
    return counts, handles


def _closing_masks():
    enc = torch.ones(3, 4)
    enc[0, 1] = 0  # layer 0 attn
    enc[1, 2] = 0  # layer 1 cgmlp
    enc[2, 1] = enc[2, 2] = 0  # layer 2: both branches (merge skipped too)
    enc[2, 3] = 0
    dec = torch.ones(3, 3)
    dec[0, 1] = 0  # layer 0 src_attn
    dec[1, 0] = dec[1, 2] = 0  # layer 1 self_attn, feed_forward
    dec[2, 1] = 0
    return enc, dec


def test_closed_modules_are_never_executed_in_encoder_and_beam_search(dense_and_gated):
    _, gated = dense_and_gated
    enc_mask, dec_mask = _closing_masks()
    counts, handles = _count_calls(gated)
    merge_calls = []
    handles.append(gated.encoder.encoders[2].merge_proj.register_forward_hook(lambda *a: merge_calls.append(1)))
    speech, lengths = speech_batch([16000])
    tl = gated.token_list
    try:
        with torch.no_grad():
            enc, _, gates = gated.encode_gated(speech, lengths, None, enc_mask, dec_mask)
            search = BatchBeamSearch(
                scorers={"decoder": GatedDecoderScorer(gated.decoder, enc[0], masks=gates.dec)},
                weights={"decoder": 1.0},
                beam_size=3,
                vocab_size=len(tl),
                sos=gated.sos,
                eos=gated.eos,
                token_list=tl,
                pre_beam_score_key="full",
            )
            search.set_hyp_primer([gated.sos, tl.index("<deu>"), tl.index("<asr>"), tl.index("<notimestamps>")])
            hyps = search(enc[0], maxlenratio=-5)
    finally:
        for h in handles:
            h.remove()
    assert len(hyps) > 0
    for (side, layer, name), n in counts.items():
        closed = (enc_mask if side == "enc" else dec_mask)[layer][
            (ENCODER_MODULES if side == "enc" else DECODER_MODULES).index(name)
        ] == 0
        if closed:
            assert n == 0, (side, layer, name)
        else:
            assert n > 0, (side, layer, name)
    assert merge_calls == []  # both branches of encoder layer 2 closed: merge skipped


def test_mixed_mask_batch_equals_each_utterance_alone(dense_and_gated):
    _, gated = dense_and_gated
    enc_mask, dec_mask = _closing_masks()
    enc_masks = torch.stack([torch.ones(3, 4), enc_mask, enc_mask.flip(0)])
    dec_masks = torch.stack([dec_mask, torch.ones(3, 3), dec_mask.flip(0)])
    speech, lengths = speech_batch([12000, 12000, 12000], seed=3)
    inputs = _att_inputs(gated, 3, seed=4)
    ys_in = torch.cat([torch.full((3, 1), gated.sos), inputs["text"]], 1)
    ys_lens = inputs["text_lengths"] + 1
    with torch.no_grad():
        enc_b, lens_b, _ = gated.encode_gated(speech, lengths, None, enc_masks, dec_masks)
        logits_b, _ = gated.decoder(enc_b, lens_b, ys_in, ys_lens, gates=dec_masks)
        step_b, _ = gated.decoder.forward_one_step(
            ys_in[:, :5], subsequent_mask(5).unsqueeze(0), enc_b, gates=dec_masks
        )
        for i in range(3):
            enc_i, _, _ = gated.encode_gated(speech[i : i + 1], lengths[i : i + 1], None, enc_masks[i], dec_masks[i])
            assert torch.allclose(enc_b[i], enc_i[0], atol=1e-5)
            logits_i, _ = gated.decoder(
                enc_i, lens_b[i : i + 1], ys_in[i : i + 1], ys_lens[i : i + 1], gates=dec_masks[i : i + 1]
            )
            assert torch.allclose(logits_b[i], logits_i[0], atol=1e-5)
            step_i, _ = gated.decoder.forward_one_step(
                ys_in[i : i + 1, :5], subsequent_mask(5).unsqueeze(0), enc_i, gates=dec_masks[i : i + 1]
            )
            assert torch.allclose(step_b[i], step_i[0], atol=1e-5)


def test_inference_skipping_equals_training_gate_multiplication(dense_and_gated):
    """Skipping a module at inference computes what multiplying it by 0 computes."""
    _, gated = dense_and_gated
    enc_mask, dec_mask = _closing_masks()
    speech, lengths = speech_batch([14000, 14000], seed=5)
    inputs = _att_inputs(gated, 2, seed=6)
    outs = {}
    for training in (False, True):
        gated.train(training)
        with torch.no_grad():
            enc, lens, gates = gated.encode_gated(speech, lengths, None, enc_mask, dec_mask)
            ys_in = torch.cat([torch.full((2, 1), gated.sos), inputs["text"]], 1)
            logits, _ = gated.decoder(enc, lens, ys_in, inputs["text_lengths"] + 1, gates=gates.dec)
        outs[training] = (enc, logits)
    gated.eval()
    assert torch.allclose(outs[False][0], outs[True][0], atol=1e-5)
    assert torch.allclose(outs[False][1], outs[True][1], atol=1e-4)


def test_batch_score_step_by_step_equals_full_forward(dense_and_gated):
    _, gated = dense_and_gated
    _, dec_mask = _closing_masks()
    speech, lengths = speech_batch([15000], seed=7)
    with torch.no_grad():
        enc, enc_lens, _ = gated.encode_gated(speech, lengths, context=context_ids(gated, [("deu", "asr")]))
        prefix = torch.cat([torch.tensor([[gated.sos]]), _att_inputs(gated, 1, seed=8)["text"]], 1)
        n_hyps = 2
        xs = enc.expand(n_hyps, -1, -1)
        ys = prefix.expand(n_hyps, -1)
        states = [None] * n_hyps
        step_logp = []
        for t in range(1, ys.size(1) + 1):
            logp, states = gated.decoder.batch_score(ys[:, :t], states, xs, gates=dec_mask)
            step_logp.append(logp)
            assert all(s[0].shape == (t, enc.size(-1)) for s in states)
        full, _ = gated.decoder(xs, enc_lens.expand(n_hyps), ys, torch.full((n_hyps,), ys.size(1)), gates=dec_mask)
        full_logp = torch.log_softmax(full, dim=-1)
    for t, logp in enumerate(step_logp):
        assert torch.allclose(logp, full_logp[:, t], atol=1e-5), t


def _train_batch(model, batch=4, seed=0):
    speech, lengths = speech_batch([16000] * batch, seed=seed)
    return dict(speech=speech, speech_lengths=lengths, **_att_inputs(model, batch, seed=seed))


def test_training_gives_gate_predictor_gradients(vocab):
    model = build(
        vocab["token_list"], model_conf=dict(ctc_weight=0.3, sparsity_conf=dict(encoder_target=0.5, decoder_target=0.5))
    ).train()
    loss, stats, _ = model(**_train_batch(model))
    loss.backward()
    grads = [p.grad for p in model.gate_predictor.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    for key in (
        "loss_sparsity",
        "sparsity_enc",
        "sparsity_dec",
        "keep_enc_attn",
        "keep_enc_cgmlp",
        "keep_dec_src_attn",
    ):
        assert key in stats, key
    # all backbone parameters get gradients too (gates multiply, nothing is skipped in training)
    assert all(
        p.grad is not None
        for n, p in model.named_parameters()
        if n.startswith(("encoder.encoders", "decoder.decoders"))
    )


def test_training_moves_sparsity_toward_target(vocab):
    """The whole model in training: the controller's multipliers rise with the updates and the skip
    rate follows (tests/test_sparsity_control.py: the target is reached)."""
    model = build(
        vocab["token_list"],
        model_conf=dict(ctc_weight=0.3, sparsity_conf=dict(lambda_lr=0.5, encoder_target=0.5, decoder_target=0.5)),
    ).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    count_updates(model, opt)
    batch = _train_batch(model, seed=1)
    history = []
    for _ in range(40):
        opt.zero_grad()
        loss, stats, _ = model(**batch)
        loss.backward()
        opt.step()
        history.append(float((stats["sparsity_enc"] + stats["sparsity_dec"]) / 2))
    start, end = history[0], sum(history[-5:]) / 5
    assert start < 0.15  # gates start open
    assert abs(end - 0.5) < abs(start - 0.5) - 0.2, history
    assert (model.sparsity_controller.lambdas[:, 0] > 0).all()  # the multipliers rose while the gates were dense


def espnet_search(model, decoder=None, beam=4):
    """ESPnet's batch beam search with the decoder scorer ``decoder`` (the model's own by default), from the
    prompt <sos><deu><asr><notimestamps>."""
    tl = model.token_list
    search = BatchBeamSearch(
        scorers={"decoder": decoder or model.decoder},
        weights={"decoder": 1.0},
        beam_size=beam,
        vocab_size=len(tl),
        sos=model.sos,
        eos=model.eos,
        token_list=tl,
        pre_beam_score_key="full",
    )
    search.set_hyp_primer([model.sos, tl.index("<deu>"), tl.index("<asr>"), tl.index("<notimestamps>")])
    return search


def test_cached_cross_attention_gives_espnets_hypotheses(dense_and_gated):
    dense, gated = dense_and_gated
    speech, lengths = speech_batch([20000], seed=11)
    kv_calls = []
    hook = gated.decoder.decoders[0].src_attn.linear_k.register_forward_hook(
        lambda m, i, o: kv_calls.append(i[0].shape)
    )
    try:
        with torch.no_grad():
            enc, _ = dense.encode(speech, lengths)
            expected = espnet_search(dense)(enc[0], maxlenratio=-6)
            scorer = GatedDecoderScorer(gated.decoder, enc[0], masks=torch.ones(1, 3, 3))
            got = espnet_search(gated, scorer)(enc[0], maxlenratio=-6)
    finally:
        hook.remove()
    assert [h.yseq.tolist() for h in got] == [h.yseq.tolist() for h in expected]
    assert torch.allclose(torch.tensor([h.score for h in got]), torch.tensor([h.score for h in expected]), atol=1e-4)
    assert kv_calls == [torch.Size([1, enc.size(1), enc.size(2)])]  # keys projected once, not per step and beam


def test_gate_warmup_keeps_gates_open_and_sparsity_loss_off(vocab):
    """During warm-up every gate is open, the loss excludes the sparsity term and the
    predictor does not move; after it, gates are sampled and the sparsity loss counts.
    Warm-up counts optimizer updates: forward passes alone (gradient accumulation) do not end it."""
    model = build(
        vocab["token_list"],
        model_conf=dict(
            ctc_weight=0.3,
            gate_conf=dict(warmup_steps=2, init_keep_bias=-3.0),  # gates would mostly close
            sparsity_conf=dict(alpha=5.0, encoder_target=0.5, decoder_target=0.5),
        ),
    ).train()
    batch = _train_batch(model, seed=2)
    for _ in range(2):
        model.zero_grad()
        torch.manual_seed(0)
        loss, stats, _ = model(**batch)
        assert float(stats["sparsity_enc"]) == pytest.approx(0.0, abs=1e-6)
        assert float(stats["sparsity_dec"]) == pytest.approx(0.0, abs=1e-6)
        assert float(stats["loss_sparsity"]) > 0  # reported, not added
        assert torch.isclose(loss, stats["loss_att"] * 0.7 + stats["loss_ctc"] * 0.3, atol=1e-5)
        loss.backward()
        assert all(p.grad is not None and not p.grad.any() for p in model.gate_predictor.parameters())
        assert model.gate_predictor.warming_up()  # no update yet
        model.after_optimizer_update()
    assert not model.gate_predictor.warming_up()
    assert model.gate_predictor.temperature() == model.gate_predictor.tau_start  # schedule starts after warm-up
    loss, stats, _ = model(**batch)
    assert float(stats["sparsity_enc"]) > 0.5 and float(stats["sparsity_dec"]) > 0.5
    assert loss > stats["loss_att"] * 0.7 + stats["loss_ctc"] * 0.3 + 0.01
