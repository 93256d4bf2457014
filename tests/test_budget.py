"""The sparsity budget's configuration, draws, multiplier state and decode-time checks (issue 22).

Whether a budget-conditioned model meets its budgets is tested on the toy harness in
``test_sparsity_control.py``.
"""

import math
from pathlib import Path

import pytest
import torch
from conftest import DECODER_CONF, ENCODER_CONF, build

from espnet_gated.bin import make_config
from espnet_gated.configs import load_yaml
from espnet_gated.method.budget import Budget
from espnet_gated.method.gates import BUDGET_FREQUENCIES, GatePredictor, budget_features
from espnet_gated.method.layout import MODULES, GateLayout
from espnet_gated.method.sparsity import SparsityController

REPO = Path(__file__).resolve().parents[1]
RANGE = {"sample": [0.0, 0.8]}
LAYOUT = GateLayout(
    n_enc_layers=2,
    n_dec_layers=2,
    enc_present=list(MODULES["enc"]),
    dec_present=list(MODULES["dec"]),
    enc_modules=list(MODULES["enc"]),
    dec_modules=list(MODULES["dec"]),
)


@pytest.mark.parametrize(
    "budget, message",
    [
        ([0.0, 0.8], "sparsity_conf.budget must be a mapping like {sample: [0.0, 0.8]}"),
        ({}, "sparsity_conf.budget.sample must be [lo, hi]"),
        ({"sample": [0.5]}, "sparsity_conf.budget.sample must be [lo, hi]"),
        ({"sample": ["low", 0.5]}, "sparsity_conf.budget.sample must be [lo, hi]"),
        ({"sample": [0.0, 1.2]}, "sparsity_conf.budget.sample must lie within [0, 1], got [0, 1.2]"),
        ({"sample": [-0.1, 0.5]}, "sparsity_conf.budget.sample must lie within [0, 1], got [-0.1, 0.5]"),
        ({"sample": [0.6, 0.2]}, "sparsity_conf.budget.sample: lo 0.6 is above hi 0.2"),
        ({"sample": [0.0, 0.8], "smaple": [0, 1]}, "sparsity_conf.budget: unknown key(s) ['smaple']"),
        ({"sample": [0.0, 0.8], "sides": ["dec", "ctc"]}, "sparsity_conf.budget.sides must be a list of distinct"),
        ({"sample": [0.0, 0.8], "sides": []}, "sparsity_conf.budget.sides must be a list of distinct"),
        ({"sample": [0.0, 0.8], "tasks": "asr"}, "sparsity_conf.budget.tasks must be a list of task names"),
        ({"sample": [0.0, 0.8], "knots": 1}, "sparsity_conf.budget.knots must be an integer >= 2, got 1"),
        ({"sample": [0.5, 0.5], "knots": 3}, "sparsity_conf.budget.knots must be 1 for a single budget"),
        ({"sample": [0.0, 0.8], "pull": -1}, "sparsity_conf.budget.pull must be a number >= 0, got -1"),
        ({"sample": [0.0, 0.8], "default": 0.9}, "sparsity_conf.budget.default must be a skip rate within sample"),
        ({"sample": [0.0, 0.8], "hold": "batch"}, "sparsity_conf.budget.hold must be one of ['utterance', 'mean']"),
        ({"sample": [0.0, 0.8], "top_share": 1.0}, "sparsity_conf.budget.top_share must be a share in [0, 1)"),
        ({"sample": [0.0, 0.8], "top_share": "half"}, "sparsity_conf.budget.top_share must be a share in [0, 1)"),
    ],
)
def test_budget_config_errors_name_the_key(budget, message):
    with pytest.raises(ValueError) as error:
        SparsityController(budget=budget)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_budgeted_side_cannot_also_have_a_fixed_target():
    with pytest.raises(ValueError, match="decoder_target is 0.5 but budget.sides includes dec: a budgeted side"):
        SparsityController(decoder_target=0.5, budget=RANGE)
    with pytest.raises(ValueError, match="budget needs controller: lagrangian, got 'penalty'"):
        SparsityController(controller="penalty", budget=RANGE)
    # the other side may keep its own target
    controller = SparsityController(encoder_target=0.25, budget={**RANGE, "sides": ["dec"]})
    assert controller.budgeted_side("dec") and not controller.budgeted_side("enc")


def test_model_config_with_a_bad_budget_is_refused_when_built(vocab):
    """The error reaches the user through the model's config (ESPnet builds the model from it)."""
    with pytest.raises(ValueError, match=r"sparsity_conf.budget.sample: lo 0.9 is above hi 0.1"):
        build(
            vocab["token_list"],
            encoder_conf=ENCODER_CONF,
            decoder_conf=DECODER_CONF,
            model_conf=dict(sparsity_conf={"budget": {"sample": [0.9, 0.1]}}),
        )


def test_draws_are_reproducible_cover_the_range_and_leave_unbudgeted_sides_at_zero():
    controller = SparsityController(budget={"sample": [0.2, 0.6], "sides": ["dec"]})
    torch.manual_seed(3)
    first = controller.draw_budgets(10)
    torch.manual_seed(3)
    assert torch.equal(first, controller.draw_budgets(10))  # torch's seed fixes the draws
    assert not torch.equal(first, controller.draw_budgets(10))
    assert first.shape == (10, 2) and (first[:, 0] == 0).all()
    # stratified: one budget in each tenth of [0.2, 0.6]
    strata = ((first[:, 1] - 0.2) / 0.04).floor().long()
    assert sorted(strata.tolist()) == list(range(10))
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(
        controller.draw_budgets(4, generator=generator),
        controller.draw_budgets(4, generator=torch.Generator().manual_seed(5)),
    )


def test_a_top_share_of_the_draws_trains_the_top_of_the_range_and_the_rest_stays_spread():
    plain = SparsityController(budget={"sample": [0.0, 0.8], "sides": ["dec"]})
    sandwich = SparsityController(budget={"sample": [0.0, 0.8], "sides": ["dec"], "top_share": 0.25})
    torch.manual_seed(0)
    draws = torch.cat([sandwich.draw_budgets(6)[:, 1] for _ in range(400)])
    at_top = (draws == 0.8).float().mean().item()
    assert abs(at_top - 0.25) < 0.03  # 6 * 0.25 = 1.5 per batch: the random rounding gives the share on average
    spread = draws[draws < 0.8]
    assert spread.min() < 0.05 and spread.max() > 0.75
    assert abs(torch.histc(spread, bins=4, min=0, max=0.8) / spread.numel() - 0.25).max() < 0.03
    assert (torch.cat([plain.draw_budgets(6)[:, 1] for _ in range(100)]) < 0.8).all()  # none without a share


def test_decode_budgets_refuse_what_the_model_was_not_trained_for():
    both = SparsityController(budget={**RANGE, "default": 0.3})
    assert both.decode_budgets() == (0.3, 0.3)  # nothing asked: the default
    assert torch.equal(both.default_budgets(3), torch.tensor([[0.3, 0.3]] * 3))  # validation batches
    assert both.decode_budgets(sparsity=0.5) == (0.5, 0.5)
    assert both.decode_budgets(sparsity="0.5", dec_sparsity=0.7) == (0.5, 0.7)  # a side wins over all
    assert both.decode_budgets(sparsity=0.8) == (0.8, 0.8)  # the range's ends are in it
    decoder_only = SparsityController(encoder_target=0.25, budget={**RANGE, "sides": ["dec"]})
    assert decoder_only.decode_budgets(sparsity=0.1) == (0.0, 0.1)
    fixed = SparsityController(decoder_target=0.5)
    assert fixed.decode_budgets() is None
    refused = [
        (both, dict(sparsity=0.9), "sparsity 0.9 is outside the budget range this model was trained on, [0, 0.8]"),
        (both, dict(enc_sparsity=-0.1), "enc_sparsity -0.1 is outside the budget range this model was trained on"),
        (both, dict(sparsity="fast"), "sparsity: want a skip rate in [0, 0.8], got 'fast'"),
        (both, dict(sparsity="nan"), "sparsity: want a skip rate in [0, 0.8], got 'nan'"),
        (both, dict(dec_sparsity=True), "dec_sparsity: want a skip rate in [0, 0.8], got True"),
        (decoder_only, dict(enc_sparsity=0.2), "enc_sparsity: this model's encoder has no budget (budgeted: decoder)"),
        (fixed, dict(sparsity=0.3), "sparsity: this model was trained for fixed sparsity targets (decoder 0.5)"),
    ]
    for controller, asked, message in refused:
        with pytest.raises(ValueError) as error:
            controller.decode_budgets(**asked)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_multipliers_per_task_and_knot_are_saved_with_the_model():
    conf = {"decoder_target": None, "budget": {"sample": [0.0, 0.8], "sides": ["dec"], "tasks": ["asr", "st_eng"]}}
    controller = SparsityController(**conf)
    assert controller.lambdas.shape == (2, 2, 9, 2)  # sides x tasks x knots (one per 0.1) x (lambda1, lambda2)
    controller.lambdas.normal_()
    restored = SparsityController(**conf)
    restored.load_state_dict(controller.state_dict())
    assert torch.equal(restored.lambdas, controller.lambdas)
    assert SparsityController(budget={"sample": [0.2, 0.4], "knots": 5}).lambdas.shape == (2, 1, 5, 2)


def test_ascent_moves_the_knots_near_each_utterance_s_budget():
    """Budgets 0.1 and 0.45 on knots 0, 0.1, ..., 0.8: the first moves knot 0.1 only, the second
    knots 0.4 and 0.5 equally; the gap is the budget minus the inference skip rate (here 0). The
    encoder's fixed target moves its one pair (knot 0)."""
    budget = {"sample": [0.0, 0.8], "sides": ["dec"]}
    controller = SparsityController(encoder_target=0.25, budget=budget, lambda_lr=1.0)
    layout = LAYOUT
    logits = torch.zeros(2, len(layout), 2)
    logits[..., 1] = 5.0  # every gate kept: inference skips nothing
    gates = torch.ones(2, len(layout))
    budgets = torch.tensor([[0.0, 0.1], [0.0, 0.45]])
    controller.loss(layout, gates, logits, torch.tensor(1.0), gating_updates=10**6, record=True, budgets=budgets)
    controller.ascend()
    lambda1 = controller.lambdas[1, 0, :, 0]
    assert lambda1.tolist() == pytest.approx([0, 0.1, 0, 0, 0.45, 0.45, 0, 0, 0])
    assert controller.lambdas[0, 0, :, 0].tolist() == pytest.approx([0.25] + [0] * 8)


def test_inference_gates_are_held_to_each_utterance_s_budget():
    """hold: utterance (the default): an utterance closes floor(b * n) to ceil(b * n) of a budgeted side's n
    slots, the predictor's own choice where that lies in between, else its lowest keep-minus-skip margins;
    a side without a budget keeps the predictor's gates, and hold: mean keeps all of them."""
    dec = LAYOUT.slot_indices("dec")  # 2 layers x 3 modules
    margins = torch.randn(3, len(LAYOUT), generator=torch.Generator().manual_seed(0))  # encoder: anything
    margins[:, dec] = torch.tensor(
        [
            [3.0, 2.0, 1.0, -1.0, 0.5, 4.0],  # closes 1, asked 3: the three lowest margins
            [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0],  # closes 6, asked 3
            [1.0, -1.0, 2.0, -0.5, 3.0, 4.0],  # closes 2, asked 1.5: its own choice, even a sampled one
        ]
    )
    logits = torch.stack([torch.zeros_like(margins), margins], dim=-1)  # (skip, keep)
    keep = (margins > 0).float()
    keep[2, dec] = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])  # sampled (training): not its margins' order
    budgets = torch.tensor([[0.0, 0.5], [0.0, 0.5], [0.0, 0.25]])
    held = Budget.parse({"sample": [0.0, 0.8], "sides": ["dec"]}).hold_gates(keep, logits, budgets, LAYOUT)
    assert held[:, dec].tolist() == [[1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 1]]
    enc = LAYOUT.slot_indices("enc")
    assert torch.equal(held[:, enc], keep[:, enc])
    free = Budget.parse({"sample": [0.0, 0.8], "sides": ["dec"], "hold": "mean"})
    assert torch.equal(free.hold_gates(keep, logits, budgets, LAYOUT), keep)


def test_loss_needs_budgets_exactly_when_configured_with_a_budget():
    layout = LAYOUT
    gates, logits = torch.ones(1, len(layout)), torch.zeros(1, len(layout), 2)
    budgeted = SparsityController(budget=RANGE)
    with pytest.raises(ValueError, match="has a budget: the loss needs each utterance's budgets"):
        budgeted.loss(layout, gates, logits, torch.tensor(1.0), 0)
    with pytest.raises(ValueError, match="has no budget: the loss takes no budgets"):
        SparsityController(decoder_target=0.5).loss(
            layout, gates, logits, torch.tensor(1.0), 0, budgets=torch.zeros(1, 2)
        )


def test_budget_input_adds_parameters_only_to_a_budgeted_predictor(vocab):
    tokens = vocab["tokens"]
    plain = GatePredictor(n_gates=6, audio_dim=8, token_list=tokens, hidden_size=4, context_dim=3)
    budgeted = GatePredictor(n_gates=6, audio_dim=8, token_list=tokens, hidden_size=4, context_dim=3, budget_input=True)
    plain_shapes = {k: v.shape for k, v in plain.state_dict().items()}
    budgeted_shapes = {k: v.shape for k, v in budgeted.state_dict().items()}
    assert plain_shapes.keys() == budgeted_shapes.keys()
    assert plain_shapes["mlp.0.weight"] == (4, 8 + 2 * 3)  # [audio; language; task], as before budgets
    assert budgeted_shapes["mlp.0.weight"] == (4, 8 + 2 * 3 + 16)  # + 4 frequencies x (sin, cos) x 2 sides
    context = torch.tensor([[tokens.index("<deu>"), tokens.index("<asr>")]] * 2)
    pooled = torch.randn(1, 8).expand(2, 8)  # one utterance at two budgets
    with pytest.raises(ValueError, match="trained without a sparsity budget"):
        plain(pooled, context, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="takes a sparsity budget per utterance"):
        budgeted(pooled, context)
    torch.nn.init.normal_(budgeted.mlp[-1].weight)  # as after training: the budget changes the logits
    logits = budgeted(pooled, context, torch.tensor([[0.0, 0.2], [0.0, 0.7]]))
    assert not torch.allclose(logits[0], logits[1])


def test_budget_features_are_the_sines_and_cosines_of_each_side_s_budget_in_float32_even_in_bf16(vocab):
    budgeted = GatePredictor(n_gates=6, audio_dim=8, token_list=vocab["tokens"], budget_input=True)
    budgets = torch.tensor([[0.0, 0.3], [0.55, 0.8]])
    frequencies = range(1, BUDGET_FREQUENCIES + 1)
    expected = [
        [f(k * math.pi * b) for b in row for f in (math.sin, math.cos) for k in frequencies] for row in budgets.tolist()
    ]
    features = budget_features(budgets, budgeted.budget_waves)
    assert features.dtype == torch.float32
    assert torch.allclose(features, torch.tensor(expected), rtol=0, atol=1e-6)
    budgeted.to(torch.bfloat16)  # a bf16 model (train_dtype, decoding --dtype): the constants stay exact
    assert budgeted.budget_waves.dtype == torch.float32
    assert torch.equal(budget_features(budgets, budgeted.budget_waves), features)


# ---------------------------------------------------------------- the model and its decoding
@pytest.fixture(scope="module")
def budgeted_dir(tmp_path_factory, vocab):
    """A tiny budgeted model on disk (decoder budget in [0, 0.8]) whose untrained predictor hears the budget: its
    output layer random, the budget's features weighted strongly."""
    from test_bench_export import _config

    from espnet_gated.sharing.model_dir import build_from_config, save_model_dir

    config = _config(vocab)
    config["model_conf"]["sparsity_conf"] = {"budget": {"sample": [0.0, 0.8], "sides": ["dec"]}}
    torch.manual_seed(4)
    model = build_from_config(config)
    with torch.no_grad():
        out = model.gate_predictor.mlp[-1]
        out.weight.normal_(0.0, 0.5)
        out.bias.zero_()
        first = model.gate_predictor.mlp[0]
        first.weight[:, -16:].normal_(0.0, 3.0)  # the budget's 16 Fourier features
    return save_model_dir(tmp_path_factory.mktemp("budgeted"), config, model.state_dict())


def _budgeted_model(budgeted_dir):
    from espnet_gated.sharing.model_dir import build_from_config

    config, model_file = budgeted_dir
    model = build_from_config(load_yaml(config))
    model.load_state_dict(torch.load(model_file))
    return model


def test_training_draws_a_budget_per_utterance_and_decoding_takes_the_asked_one(vocab, budgeted_dir):
    from conftest import speech_batch
    from test_model import _att_inputs

    model = _budgeted_model(budgeted_dir)
    speech, lengths = speech_batch([16000, 12000, 14000], seed=3)
    model.train()
    torch.manual_seed(0)
    loss, stats, _ = model(speech, lengths, **_att_inputs(model, 3, seed=3))
    assert "target_dec" in stats and 0.0 <= float(stats["target_dec"]) <= 0.8
    ctx = model.token_context("<deu>", "<asr>", 3)
    model.eval()
    with torch.no_grad():
        _, _, asked = model.encode_gated(speech, lengths, ctx, budget=(0.0, 0.7))
        _, _, default = model.encode_gated(speech, lengths, ctx)
    assert torch.allclose(asked.budgets, torch.tensor([[0.0, 0.7]] * 3))
    assert torch.allclose(default.budgets, torch.tensor([[0.0, 0.4]] * 3))  # the middle of the range


def test_training_gates_are_held_to_each_utterance_s_ramped_budget_with_the_sampled_gradient(vocab, budgeted_dir):
    """In training too each utterance closes floor(b n) to ceil(b n) of the decoder's n modules, b its drawn
    budget scaled by the ramp (every module open at its start), and the predictor still gets a gradient
    (straight-through), so the backbone learns with the masks that decoding will use."""
    from conftest import speech_batch

    model = _budgeted_model(budgeted_dir)
    model.train()
    model.sparsity_controller.ramp_steps = 10
    speech, lengths = speech_batch([16000, 12000, 14000, 15000, 13000, 11000], seed=5)
    ctx = model.token_context("<deu>", "<asr>", 6)
    dec = model.gate_layout.slot_indices("dec")
    for updates, ramp in ((0, 0.0), (5, 0.5), (10, 1.0)):
        model.gate_predictor.train_steps.fill_(model.gate_predictor.warmup_steps + updates)
        torch.manual_seed(updates)
        _, _, gates = model.encode_gated(speech, lengths, ctx)
        wanted = gates.budgets[:, 1] * ramp * len(dec)
        closed = len(dec) - gates.slots[:, dec].sum(1)
        assert ((closed >= (wanted - 1e-4).floor()) & (closed <= (wanted + 1e-4).ceil())).all(), (closed, wanted)
    assert closed.sum() > 0
    model.gate_predictor.zero_grad()
    gates.slots[:, dec].sum().backward()
    assert model.gate_predictor.mlp[-1].weight.grad.abs().sum() > 0


def test_decoding_at_budgets_records_them_and_refuses_what_the_model_cannot_give(budgeted_dir, tmp_path):
    from test_bench_export import DECODE, _speeches

    from espnet_gated.decoding.inference import GatedSpeech2Text
    from espnet_gated.method.layout import parse_mask
    from espnet_gated.method.sparsity import BudgetRequestError

    config, model_file = budgeted_dir
    s2t = GatedSpeech2Text(str(config), str(model_file), sparsity=0.1, **DECODE)
    speeches = _speeches([14000, 12000], seed=8)
    low, high = s2t.decode_batch(speeches), s2t.decode_batch(speeches, sparsity=0.8)
    assert (low.budget, high.budget) == ((0.0, 0.1), (0.0, 0.8))
    # held to the budget: of the 9 decoder slots each utterance closes 0-1 (0.1 * 9) and 7-8 (0.8 * 9)
    assert {m[1].numel() for m in low.masks + high.masks} == {9}
    assert all(9 - m[1].sum() in (0, 1) for m in low.masks) and all(9 - m[1].sum() in (7, 8) for m in high.masks)
    # the budget reaches the predictor (an untrained one: which way its masks move is arbitrary)
    assert [m[1].tolist() for m in low.masks] != [m[1].tolist() for m in high.masks]
    assert s2t.decode(speeches[0], dec_sparsity="0.8").masks[0][1].tolist() == high.masks[0][1].tolist()
    assert s2t.decode_batch(speeches, sparsity=0.8, masks=s2t.every_module).budget is None  # no budget shaped them
    ranked = [s2t.identify_language(speeches[:1], sparsity=b)[0] for b in (0.1, 0.8)]
    assert ranked[0] != ranked[1]  # language identification predicts its gates at the budget asked
    for bad, message in (
        (dict(sparsity=0.9), r"sparsity 0.9 is outside the budget range this model was trained on, \[0, 0.8\]"),
        (dict(sparsity="half"), r"sparsity: want a skip rate in \[0, 0.8\], got 'half'"),
        (dict(enc_sparsity=0.3), "enc_sparsity: this model's encoder has no budget"),
    ):
        with pytest.raises(BudgetRequestError, match=message):
            s2t.decode(speeches[0], **bad)
    with pytest.raises(BudgetRequestError, match="outside the budget range"):
        GatedSpeech2Text(str(config), str(model_file), sparsity=1.0, **DECODE)

    # the command line: the budget in each gates line; a bad one is one line, status 2
    from espnet_gated.bin import s2t_inference
    from espnet_gated.cli import ToolExit

    wav_scp = tmp_path / "wav.scp"
    import soundfile

    soundfile.write(tmp_path / "a.wav", speeches[0].numpy(), 16000)
    wav_scp.write_text(f"u1 {tmp_path / 'a.wav'}\n")
    args = ["--s2t_train_config", str(config), "--s2t_model_file", str(model_file), "--lang_sym", "deu"]
    args += ["--task_sym", "asr", "--data_path_and_name_and_type", f"{wav_scp},speech,sound"]
    args += ["--beam_size", "2", "--maxlenratio", "-3"]
    s2t_inference.main([*args, "--output_dir", str(tmp_path / "out"), "--dec_sparsity", "0.6"])
    line = (tmp_path / "out" / "1best_recog" / "gates").read_text().split(" ", 1)[1]
    assert parse_mask(line)["budget"] == [0.0, 0.6] and line.rstrip().endswith("budget=0.00,0.60")
    with pytest.raises(ToolExit, match=r"s2t_inference: error: sparsity 0.95 is outside the budget range") as e:
        s2t_inference.main([*args, "--output_dir", str(tmp_path / "bad"), "--sparsity", "0.95"])
    assert e.value.code == 2


def test_bench_times_a_budgeted_model_at_each_asked_budget(budgeted_dir, tmp_path):

    from espnet_gated.bin import bench
    from espnet_gated.cli import ToolExit

    config, model_file = budgeted_dir
    args = ["--s2t_train_config", str(config), "--s2t_model_file", str(model_file), "--lang_sym", "deu"]
    args += [*"--task_sym asr --n_utts 2 --utt_sec 1.2 --beam 2 --ctc_weight 0 --decode_len 3 --no_export".split()]
    args += ["--sides", "dec", "--sparsities", "0.5", "--sparsity", "0.1 0.8", "--out", str(tmp_path / "bench")]
    report = bench.main(args)
    rows = {r["variant"]: r for r in report["runs"][0]["variants"]}
    low, high = rows["learned@0.1"], rows["learned@0.8"]
    # each budget reaches the predictor: the masks of the two requests differ (an untrained predictor)
    assert [u["mask"] for u in low["utterances"]] != [u["mask"] for u in high["utterances"]]
    assert [u["mask"] for u in rows["learned"]["utterances"]] != [u["mask"] for u in high["utterances"]]
    shares = report["runs"][0]["targets"]["predictor_pct"]
    assert set(shares) == {"learned", "learned@0.1", "learned@0.8"} and all(0 < v < 100 for v in shares.values())
    assert "learned@0.8" in (tmp_path / "bench" / "bench.md").read_text()
    with pytest.raises(ToolExit, match=r"bench: error: --sparsity 0.9: sparsity 0.9 is outside") as e:
        bench.main([*args[:-4], "--sparsity", "0.9", "--out", str(tmp_path / "bad")])
    assert e.value.code == 2


def test_a_compared_system_asks_its_own_budget_not_the_main_systems():
    """decode --dec_sparsity S --system out_dir=REF,...: the reference (trained without budgets, which would
    refuse one) is decoded without S; a system that names its own budget gets it."""
    from espnet_gated.recipe.decode_jobs import parse_system

    main = {"out_dir": "gated", "s2t_model_file": "gated.pth", "dec_sparsity": 0.3, "sparsity": 0.2, "beam_size": 5}
    reference = parse_system("out_dir=ref,s2t_model_file=ref.pth,gate_mode=all_open", main)
    assert reference == {"out_dir": "ref", "s2t_model_file": "ref.pth", "gate_mode": "all_open", "beam_size": 5}
    assert parse_system("out_dir=b,dec_sparsity=0.6", main)["dec_sparsity"] == "0.6"


@pytest.mark.parametrize(
    "base, tasks", [("conf/train.yaml", ["asr", "st_eng"]), ("egs2/europarl_st/s2t1/conf/train.yaml", [])]
)
def test_sweep_runs_keep_the_shape_of_the_recipe_targets(base, tasks, tmp_path):
    """Stage 17's fixed runs (make_config --target) and budget model (--budget) hold each task to its target
    where the recipe's gated model does (conf/train.yaml), and all utterances to one where it does (europarl_st)."""
    fixed, budgeted = tmp_path / "dec0.75.yaml", tmp_path / "dec_budget.yaml"
    make_config.main([str(REPO / base), "--target", "dec=0.75", "--target", "enc=null", "--out", str(fixed)])
    make_config.main([str(REPO / base), "--budget", "dec=0,0.8", "--out", str(budgeted)])
    controller = SparsityController(**load_yaml(fixed)["model_conf"]["sparsity_conf"])
    assert controller.targets == {"enc": None, "dec": dict.fromkeys(tasks, 0.75) if tasks else 0.75}
    assert controller.tasks == tasks
    controller = SparsityController(**load_yaml(budgeted)["model_conf"]["sparsity_conf"])
    assert controller.targets == {"enc": None, "dec": None} and controller.tasks == tasks
    budget = controller.budget
    assert (budget.low, budget.high, budget.sides, budget.tasks) == (0.0, 0.8, ("dec",), tuple(tasks))


@pytest.mark.parametrize("option", ["--target=dec=1.5", "--target=mid=0.5", "--budget=dec=0.8", "--budget=top=0,0.8"])
def test_make_config_refuses_a_malformed_sweep_point(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        make_config.main([str(REPO / "conf/train.yaml"), option, "--out", str(tmp_path / "x.yaml")])
    assert exit.value.code == 2 and option.split("=", 1)[1] in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()
