"""Pad-invariant batched encoding and decoding, and half-precision decoding.

In a padded batch of unequal lengths each utterance gets the encoder output, the gates and the
hypotheses it gets alone. The pattern of padding-invariance tests (e.g. NeMo's
``test_preprocessor_invariant_to_padding``): encode an utterance alone and inside a padded batch
with its own length, and compare its valid frames. The lengths cover every remainder of the
subsampling strides, so the last frames of the shorter utterances have convolution windows that
would reach into the padding.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import ENCODER_CONF, build, model_args, speech_batch

from espnet_gated.compat import STOCK_ZEROES_PADDING, CTCPrefixScoreTH
from espnet_gated.decoding.ctc_prefix_score import BatchCTCPrefixScore
from espnet_gated.decoding.inference import GatedSpeech2Text
from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES, format_mask
from espnet_gated.plugin.tasks import preprocessor_defaults
from espnet_gated.sharing.model_dir import build_from_config, save_model_dir

#: samples at 16 kHz, hop 160: 101, 84, 77, 94, 63 feature frames (every remainder mod 2, 3 and 4)
LENGTHS = [16000, 13300, 12200, 14950, 10000]
LANGS = ["<deu>", "<fra>", "<ita>", "<eng>", "<deu>"]
TASKS = ["<asr>", "<st_eng>", "<asr>", "<asr>", "<st_eng>"]
#: (input layer, positional encoding): OWSM v3.1 (conv2d), the default recipe (conv1d3, relative
#: positions), OWSM v4 (conv2d8)
LAYERS = [("conv2d", "abs_pos"), ("conv1d3", "rel_pos"), ("conv2d8", "abs_pos")]
DECODE = dict(beam_size=3, lang_sym="<deu>", task_sym="<asr>")


def _speeches(lengths=LENGTHS, seed=1):
    speech, lens = speech_batch(lengths, seed=seed)
    return [speech[i, :n] for i, n in enumerate(lens.tolist())]


def _global_mvn_stats(path, n_mels: int) -> str:
    """A stats file in ESPnet's collect_stats format (count, sum, sum_square)."""
    rng = np.random.default_rng(0)
    count = 1000
    mean, std = rng.normal(-5.0, 2.0, n_mels), rng.uniform(1.0, 3.0, n_mels)
    np.savez(path, count=count, sum=mean * count, sum_square=(std**2 + mean**2) * count)
    return str(path)


def _encoder_conf(input_layer, pos_enc):
    conf = copy.deepcopy(ENCODER_CONF)
    conf.update(input_layer=input_layer, pos_enc_layer_type=pos_enc)
    if pos_enc == "rel_pos":
        conf["attention_layer_type"] = "rel_selfattn"
    return conf


def _normalize_conf(normalize, tmp_path):
    return {"stats_file": _global_mvn_stats(tmp_path / "stats.npz", 20)} if normalize == "global_mvn" else {}


def _model_dir(root, vocab, input_layer="conv2d", pos_enc="abs_pos", normalize="utterance_mvn"):
    """A tiny random gated model on disk whose gate predictor gives different masks to different
    utterances and contexts."""
    args = model_args(vocab["token_list"], encoder_conf=_encoder_conf(input_layer, pos_enc))
    args.normalize, args.normalize_conf = normalize, _normalize_conf(normalize, root)
    args.preprocessor = "s2t"
    args.preprocessor_conf = {**preprocessor_defaults(), "speech_length": None}
    args.token_type, args.bpemodel = "bpe", str(vocab["bpemodel"])
    args.model_conf = {**args.model_conf, "gate_conf": {"hidden_size": 16, "context_dim": 8}}
    config = vars(args)
    torch.manual_seed(0)
    model = build_from_config(config)
    with torch.no_grad():
        model.gate_predictor.mlp[-1].weight.normal_(0.0, 2.0)
        model.gate_predictor.mlp[-1].bias.zero_()
    return save_model_dir(root, config, model.state_dict())


def _s2t(model_dir, **kwargs):
    config, model_file = model_dir
    return GatedSpeech2Text(str(config), str(model_file), **{**DECODE, **kwargs})


def _same_masks(a, b) -> bool:
    return all(format_mask(*x) == format_mask(*y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("input_layer, pos_enc", LAYERS)
@pytest.mark.parametrize("normalize", ["utterance_mvn", "global_mvn"])
def test_batched_encoder_output_equals_each_utterance_alone(vocab, tmp_path, input_layer, pos_enc, normalize):
    s2t = _s2t(_model_dir(tmp_path, vocab, input_layer, pos_enc, normalize))
    speeches = _speeches()
    batched, batch_masks = s2t.encode_batch(speeches, LANGS, TASKS)
    alone_masks = []
    for i, speech in enumerate(speeches):
        (alone,), (mask,) = s2t.encode_batch([speech], LANGS[i], TASKS[i])
        alone_masks.append(mask)
        assert batched[i].shape == alone.shape, i  # the utterance's own frames, no extra ones
        torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=0, msg=f"utterance {i}")
    assert _same_masks(batch_masks, alone_masks)
    assert len({format_mask(*m) for m in alone_masks}) > 1  # the masks differ between utterances


@pytest.mark.parametrize("input_layer, pos_enc", LAYERS[:2])
def test_padding_does_not_leak_through_the_merges_of_closed_branches(vocab, tmp_path, input_layer, pos_enc):
    """Forced per-utterance masks: each branch pattern (both, attention only, cgMLP only, none) runs
    on a subset of the rows, so the merges with one half folded away see padded rows too."""
    s2t = _s2t(_model_dir(tmp_path, vocab, input_layer, pos_enc))
    model = s2t.s2t_model
    n_enc, n_dec = len(model.encoder.encoders), len(model.decoder.decoders)
    enc = torch.ones(len(LENGTHS), n_enc, len(ENCODER_MODULES))
    for i, (attn, cgmlp) in enumerate([(1, 1), (0, 1), (1, 0), (0, 0), (1, 1)]):
        enc[i, 0, 1], enc[i, 0, 2] = attn, cgmlp
        enc[i, 1, 1], enc[i, 1, 2] = cgmlp, attn
    dec = torch.ones(len(LENGTHS), n_dec, len(DECODER_MODULES))
    speeches = _speeches()
    batched, _ = s2t.encode_batch(speeches, LANGS, TASKS, masks=(enc, dec))
    for i, speech in enumerate(speeches):
        (alone,), _ = s2t.encode_batch([speech], LANGS[i], TASKS[i], masks=(enc[i], dec[i]))
        torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=0, msg=f"utterance {i}")


def test_espnets_model_lets_padding_leak(vocab, tmp_path):
    """The same comparison on ESPnet's dense model (its batched frontend; on 202511 also its subsampling
    masks and layers) fails: the tests above would catch a gated encoder that computed as ESPnet does."""
    model = build(vocab["token_list"], dense=True, encoder_conf=_encoder_conf("conv2d", "abs_pos")).eval()
    speech, lengths = speech_batch(LENGTHS, seed=1)
    with torch.no_grad():
        batched, batched_lens = model.encode(speech, lengths)
        worst = 0.0
        for i, n in enumerate(LENGTHS):
            if n == max(LENGTHS):
                continue
            alone, _ = model.encode(speech[i : i + 1, :n], lengths[i : i + 1])
            if not STOCK_ZEROES_PADDING:  # 202511: extra frames whose windows reach into the padding
                assert int(batched_lens[i]) > alone.size(1)
            worst = max(worst, float((batched[i, : alone.size(1)] - alone[0]).abs().max()))
    assert worst > 1e-2


@pytest.mark.parametrize("input_layer, pos_enc, normalize", [("conv1d3", "rel_pos", "global_mvn")])
@pytest.mark.parametrize("ctc_weight", [0.0, 0.5])
def test_decode_batch_with_unequal_lengths_gives_the_hypotheses_of_one_at_a_time(
    vocab, tmp_path, input_layer, pos_enc, normalize, ctc_weight
):
    """The default recipe's input layer. The utterances are sorted, longest first, and decoded in
    batches; within a batch the encoder (on a CPU: lengths within CPU_ENCODER_MAX_PADDING) and the
    beam search run once."""
    s2t = _s2t(_model_dir(tmp_path, vocab, input_layer, pos_enc, normalize), ctc_weight=ctc_weight, maxlenratio=-6)
    speeches = _speeches([16000, 12000, 15200, 14700, 11500])
    single, masks = [], []
    for speech, lang, task in zip(speeches, LANGS, TASKS, strict=True):
        decoding = s2t.decode(speech, lang_sym=lang, task_sym=task)
        single.append(decoding.nbests[0][0])
        masks.append(format_mask(*decoding.masks[0]))
    encoder_batches = []
    hook = s2t.s2t_model.encoder.register_forward_hook(lambda m, args, out: encoder_batches.append(args[0].size(0)))
    try:
        for batch_size in (3, 5):
            batched = s2t.decode_batch(speeches, LANGS, TASKS, batch_size=batch_size)
            nbests = batched.nbests
            assert [r[0][4].yseq.tolist() for r in nbests] == [r[4].yseq.tolist() for r in single]
            torch.testing.assert_close(
                torch.tensor([float(r[0][4].score) for r in nbests]), torch.tensor([float(r[4].score) for r in single])
            )
            assert [format_mask(*m) for m in batched.masks] == masks
    finally:
        hook.remove()
    # batches of 3: [16000, 15200, 14700] and [12000, 11500]; of 5: the same two encoder batches (16000 and
    # 12000 samples are too far apart for a CPU encoder batch), one beam search; the step log names the
    # utterances by their index in the input
    assert encoder_batches == [3, 2, 3, 2]
    assert batched.search_log[0][1] == [0, 2, 3, 1, 4]
    assert (batched.timing["ctc_s"] > 0) == (ctc_weight > 0)


def test_bfloat16_decoding_runs_and_keeps_the_float32_gates(vocab, tmp_path):
    model_dir = _model_dir(tmp_path, vocab, "conv1d3", "rel_pos")
    fp32 = _s2t(model_dir, ctc_weight=0.5, maxlenratio=-6)
    bf16 = _s2t(model_dir, ctc_weight=0.5, maxlenratio=-6, dtype="bfloat16")
    assert next(bf16.s2t_model.parameters()).dtype == torch.float32  # autocast over float32 weights
    speeches = _speeches()
    want = fp32.decode_batch(speeches, LANGS, TASKS)
    got = bf16.decode_batch(speeches, LANGS, TASKS)
    assert _same_masks(got.masks, want.masks)
    assert len({format_mask(*m) for m in want.masks}) > 1
    # the matrix products ran in bfloat16: the scores move, a little
    diffs = [abs(float(g[0][4].score) - float(w[0][4].score)) for g, w in zip(got.nbests, want.nbests, strict=True)]
    assert max(diffs) > 0 and max(diffs) < 1.0
    # one at a time: ESPnet's beam search under autocast, the same masks
    one = bf16.decode(speeches[1], lang_sym=LANGS[1], task_sym=TASKS[1])
    assert format_mask(*one.masks[0]) == format_mask(*want.masks[1])
    with pytest.raises(ValueError, match="dtype"):
        _s2t(model_dir, dtype="int8")


@pytest.mark.parametrize("scoring", [False, True])
def test_batch_ctc_prefix_scores_equal_espnets_for_each_utterance_alone(scoring):
    """Three utterances of unequal lengths scored together, the second leaving after two steps,
    against ESPnet's ``CTCPrefixScoreTH`` on each utterance alone, with and without pre-beam."""
    g = torch.Generator().manual_seed(0)
    lengths, n_hyps, vocab, eos = [12, 9, 7], 4, 9, 8
    logp = torch.randn(len(lengths), max(lengths), vocab, generator=g).log_softmax(-1)
    ours = BatchCTCPrefixScore(logp.clone(), lengths, 0, eos)
    alone = [CTCPrefixScoreTH(logp[i : i + 1, :n].clone(), torch.tensor([n]), 0, eos) for i, n in enumerate(lengths)]
    active = [0, 1, 2]
    y = torch.randint(1, eos, (len(lengths) * n_hyps, 1), generator=g)
    state, states = None, [None] * len(lengths)
    for step in range(5):
        ids = torch.topk(torch.randn(len(y), vocab, generator=g), 5, dim=-1)[1] if scoring else None
        utts = torch.tensor(active)
        scores, scored = ours(y, state, ids, utts, max(lengths[u] for u in active))
        labels = torch.randint(1, vocab, (len(y),), generator=g)
        if ids is not None:  # a scored label for most rows, one that was not for the first
            labels = ids[torch.arange(len(y)), torch.randint(0, 5, (len(y),), generator=g)]
            labels[0] = next(v for v in range(vocab) if v not in ids[0])
        keep = [j for j, u in enumerate(active) if not (step == 1 and u == 1)]
        rows = torch.tensor([j * n_hyps + h for j in keep for h in range(n_hyps)])
        for j, u in enumerate(active):
            block = slice(j * n_hyps, (j + 1) * n_hyps)
            want, want_state = alone[u](y[block], states[u], None if ids is None else ids[block])
            torch.testing.assert_close(scores[block], want, rtol=0, atol=1e-5)
            r, log_psi, _, _, idmap = want_state  # ESPnet's CTCPrefixScorer.select_state
            cols = labels[block] if idmap is None else idmap[torch.arange(n_hyps), labels[block]]
            states[u] = (
                r[:, :, torch.arange(n_hyps), cols],
                log_psi[torch.arange(n_hyps), labels[block]][:, None],
                0,
                0,
            )
        state = ours.select_state(scored, rows, labels[rows])
        y = torch.cat([y[rows], labels[rows, None]], dim=1)
        active = [active[j] for j in keep]
