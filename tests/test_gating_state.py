"""Rules for the gating state (issue 13): update counting, checkpoint averaging, float32 gates,
and refusing contexts the gate predictor never trained on."""

import pytest
import torch
from conftest import build, context_ids, speech_batch
from espnet2.main_funcs.average_nbest_models import average_nbest_models
from espnet2.train.reporter import Reporter

from espnet_gated.plugin.tasks import count_updates, keep_gating_state_of_the_best
from espnet_gated.plugin.weights import GATING_STATE


def _trained_contexts_model(vocab, pairs=(("deu", "asr"), ("fra", "st_eng"))):
    """A gated model whose predictor has seen the contexts ``pairs`` in one training update."""
    model = build(vocab["token_list"]).train()
    optimizer = torch.optim.SGD(model.gate_predictor.parameters(), lr=0.0)
    count_updates(model, optimizer)
    pooled = torch.zeros(len(pairs), model.encoder.output_size())
    model.gate_predictor(pooled, context_ids(model, pairs)).sum().backward()
    optimizer.step()
    return model.eval()


def test_updates_not_forward_passes_count_and_record_the_trained_contexts(vocab):
    model = build(vocab["token_list"]).train()
    optimizer = torch.optim.SGD(model.gate_predictor.parameters(), lr=0.0)
    count_updates(model, optimizer)
    pooled = torch.zeros(2, model.encoder.output_size())
    for _ in range(3):  # three forward passes accumulated into one update
        model.gate_predictor(pooled, context_ids(model, [("deu", "asr"), ("deu", "st_eng")])).sum().backward()
    assert int(model.gate_predictor.train_steps) == 0 and not model.gate_predictor.context_counts.any()
    optimizer.step()
    assert int(model.gate_predictor.train_steps) == 1
    langs, tasks = model.gate_predictor.trained_contexts()
    assert langs == ["<deu>"] and tasks == ["<asr>", "<st_eng>"]


def test_averaging_keeps_the_best_checkpoints_gating_state(vocab, tmp_path):
    """keep_nbest_models > 1: the backbone is averaged, the gate predictor and the controller are the
    best epoch's (ESPnet alone would average the predictor into masks no checkpoint used and sum the
    update counter)."""
    states = {}
    reporter, early = Reporter(), Reporter()  # early: as the reporter was after epoch 2
    for epoch, acc in ((1, 0.5), (2, 0.9), (3, 0.7)):
        model = build(vocab["token_list"], seed=epoch)
        model.gate_predictor.train_steps.fill_(100 * epoch)
        model.sparsity_controller.lambdas.fill_(float(epoch))
        states[epoch] = model.state_dict()
        torch.save(states[epoch], tmp_path / f"{epoch}epoch.pth")
        for r in (reporter, early) if epoch <= 2 else (reporter,):
            r.set_epoch(epoch)
            with r.observe("valid") as sub:
                sub.register({"acc": acc})
                sub.next()
    # ESPnet's trainer averages (also the first 2 epochs alone: an intermediate average), then the post-step
    average_nbest_models(tmp_path, reporter, [("valid", "acc", "max")], nbest=2)
    torch.save({"reporter": reporter.state_dict()}, tmp_path / "checkpoint.pth")
    average_nbest_models(tmp_path, early, [("valid", "acc", "max")], nbest=2, suffix="till2epoch")
    keep_gating_state_of_the_best(tmp_path, [("valid", "acc", "max")], 2)
    averaged = torch.load(tmp_path / "valid.acc.ave_2best.pth")
    till2 = torch.load(tmp_path / "valid.acc.ave_2best.till2epoch.pth")
    assert int(till2["gate_predictor.train_steps"]) == 200  # the best of epochs 1-2, also epoch 2
    for key, value in averaged.items():
        if key.startswith(GATING_STATE):
            assert torch.equal(value, states[2][key]), key  # the best epoch's, exactly
        elif value.is_floating_point():
            assert torch.allclose(value, (states[2][key] + states[3][key]) / 2, atol=1e-6), key
    assert int(averaged["gate_predictor.train_steps"]) == 200
    # what ESPnet's averaging alone does to the same checkpoints
    average_nbest_models(tmp_path, reporter, [("valid", "acc", "max")], nbest=2, suffix="plain")
    plain = torch.load(tmp_path / "valid.acc.ave_2best.plain.pth")
    assert int(plain["gate_predictor.train_steps"]) == 500  # summed
    assert not torch.equal(plain["gate_predictor.mlp.0.weight"], states[2]["gate_predictor.mlp.0.weight"])


@pytest.mark.parametrize("mode", ["autocast", "bf16_model"])
def test_gate_logits_and_decisions_are_float32_under_bf16(vocab, mode):
    model = build(vocab["token_list"]).eval()
    with torch.no_grad():  # spread the logits so that some are close to the decision boundary
        for p in model.gate_predictor.mlp.parameters():
            p.normal_(0.0, 1.0)
    speech, lengths = speech_batch([16000, 12000, 9000], seed=3)
    context = context_ids(model, [("deu", "asr"), ("fra", "st_eng"), ("ita", "asr")])
    with torch.no_grad():
        reference = model.encode_gated(speech, lengths, context=context)[2].slots
        pooled = torch.randn(64, model.encoder.output_size())
        many = context.repeat(22, 1)[:64]
        reference_many = model.gate_predictor.sample(model.gate_predictor(pooled, many))
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model.gate_predictor(pooled, many)
                gates = model.encode_gated(speech, lengths, context=context)[2]
        else:
            model = model.to(torch.bfloat16)
            logits = model.gate_predictor(pooled.bfloat16(), many)
            gates = model.encode_gated(speech.bfloat16(), lengths, context=context)[2]
    assert logits.dtype == torch.float32
    assert torch.equal(model.gate_predictor.sample(logits), reference_many)
    if mode == "autocast":  # the backbone's bf16 features move the pooled input only by rounding
        assert torch.equal(gates.slots, reference)
    assert gates.slots.dtype == torch.float32


def test_an_untrained_language_or_task_is_refused_and_names_the_trained_ones(vocab):
    model = _trained_contexts_model(vocab)
    model.check_trained_context(model.token_context("<deu>", "<asr>"))
    model.check_trained_context(model.token_context("<fra>", "<asr>"))  # each token was trained, if not together
    with pytest.raises(
        ValueError, match=r"never trained on <ita>.*Trained languages: <deu> <fra>; tasks: <asr> <st_eng>"
    ):
        model.check_trained_context(model.token_context("<ita>", "<asr>"))
    with pytest.raises(ValueError, match=r"never trained on <eng>"):
        model.check_trained_context(model.token_context("<eng>", "<st_eng>"))


def test_decoding_an_untrained_context_errors_or_keeps_every_module(vocab, tmp_path):
    from test_bench_export import DECODE, _config, _speeches

    from espnet_gated.decoding.inference import GatedSpeech2Text
    from espnet_gated.sharing.model_dir import build_from_config, save_model_dir

    config = _config(vocab)
    model = build_from_config(config)
    with torch.no_grad():
        model.gate_predictor.mlp[-1].weight.normal_(0.0, 2.0)
        model.gate_predictor.mlp[-1].bias.zero_()
    rows = model.gate_predictor.context_index[context_ids(model, [("deu", "asr")])[0]]
    model.gate_predictor.context_counts[rows[0], 0] = 7  # trained on <deu> as a language ...
    model.gate_predictor.context_counts[rows[1], 1] = 7  # ... and <asr> as a task
    config_file, model_file = save_model_dir(tmp_path, config, model.state_dict())
    speeches = _speeches([9000, 12000])
    kwargs = dict(s2t_train_config=config_file, s2t_model_file=model_file, **DECODE)
    strict = GatedSpeech2Text(**kwargs)
    with pytest.raises(ValueError, match=r"never trained on <ita>.*Trained languages: <deu>; tasks: <asr>"):
        strict(speeches[0], lang_sym="<ita>")
    lenient = GatedSpeech2Text(unseen_context="all_open", **kwargs)
    one = lenient.decode(speeches[0], lang_sym="<ita>")
    assert all(bool(side.all()) for side in one.masks[0])  # every module kept
    both = lenient.decode_batch(speeches, lang_sym=["<deu>", "<ita>"], task_sym=["<asr>", "<asr>"])
    predicted, opened = both.masks
    assert all(bool(side.all()) for side in opened) and not all(bool(side.all()) for side in predicted)
    strict(speeches[0])  # <deu> <asr> (DECODE's) was trained: no error
