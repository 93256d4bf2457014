"""The default recipe (run.sh and the stage engine): options, errors, progress, and a reduced run end to end."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from espnet_gated.bin.train_progress import Progress
from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES, parse_mask

REPO = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def make_recipe(root: Path) -> Path:
    """A copy of the default recipe (run.sh, conf/, local/) whose engine is the repository's."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "run.sh", root / "run.sh")
    shutil.copytree(REPO / "conf", root / "conf")
    shutil.copytree(REPO / "local", root / "local")
    (root / "egs2").symlink_to(REPO / "egs2")
    return root


def run_recipe(root: Path, *args, timeout=1200):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        ["bash", str(root / "run.sh"), "--python", sys.executable, *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_help_documents_every_option(tmp_path):
    proc = run_recipe(make_recipe(tmp_path / "r"), "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("stage", "stop_stage", "nj", "ngpu", "num_nodes", "langs", "tasks", "train_config",
                   "decode_config", "tag", "init_from", "sweep_targets", "decode_cmd", "train_cmd",
                   "hf_repo"):  # fmt: skip
        assert f"  --{option} [" in proc.stdout, option
    stages = ("1 ", "3 ", "4 ", "5 ", "10 ", "11 ", "12 ", "13 ", "14 pack", "15 ", "16 upload", "17 sparsity sweep")
    for stage in stages:
        assert f"\n  {stage}" in proc.stdout, stage
    assert "help_message" not in proc.stdout


def test_entry_point_usage_keeps_its_line_continuations():
    """`--help` prints the module docstring: a usage command split over lines keeps its backslashes
    (in a plain string literal Python would join the lines)."""
    for path in sorted((REPO / "espnet_gated" / "bin").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""
        for line in doc.splitlines():
            assert not ("python -m" in line and "   --" in line), f"{path.name}: {line.strip()}"


def test_unknown_option_and_missing_config_are_named(tmp_path):
    recipe = make_recipe(tmp_path / "r")
    proc = run_recipe(recipe, "--stgae", "3")
    assert proc.returncode == 2 and "unknown option --stgae" in proc.stderr
    proc = run_recipe(recipe, "--train_config", "conf/missing.yaml")
    assert proc.returncode != 0 and "training config conf/missing.yaml not found" in proc.stderr


def test_missing_data_dir_is_named_and_leaves_no_marker(tmp_path):
    recipe = make_recipe(tmp_path / "r")
    (recipe / "data").mkdir()
    proc = run_recipe(recipe, "--stage", "3", "--stop_stage", "3")
    assert proc.returncode != 0
    assert "data/train" in proc.stderr
    assert not (recipe / "dump" / "raw" / ".stage3.done").exists()


def test_training_progress_reports_rate_and_eta():
    progress = Progress(max_epoch=3, iters_per_epoch=0)
    assert progress.line("[train] mini-batch sizes summary: N-batch=100, mean=20.0, min=2, max=40") is None
    text = "1epoch:train:1-50batch: iter_time=0.01, loss=42.5, acc=0.25, sparsity_dec=0.125, train_time=2.0"
    shown = progress.line(f"[host] 2026-11-23 10:00:00,000 (trainer:811) INFO: {text}")
    assert shown.startswith("epoch 1/3 step 50/300 (17%) 2.00 s/step ETA 8m20s")
    assert "loss=42.5" in shown and "acc=0.25" in shown and "sparsity_dec=0.125" in shown
    shown = progress.line("2epoch:train:51-100batch: loss=30.0, train_time=2.0")
    assert shown.startswith("epoch 2/3 step 200/300 (67%)"), shown
    results = "2epoch results: [train] loss=30.0, keep_dec_l0_src_attn=0.5, [valid] loss=20.1, acc=0.9, "
    results += "sparsity_dec=0.501, target_dec=0.5, keep_dec_l0_src_attn=0.25, time=5.0 seconds, total_count=40"
    shown = progress.line(f"[host] 2026-11-23 10:00:00,000 (trainer:394) INFO: {results}")
    assert shown == "epoch 2/3 validation: loss=20.1 acc=0.9 sparsity_dec=0.501 target_dec=0.5", shown


def make_reduced_recipe(root: Path) -> Path:
    """:func:`make_recipe` with a corpus, trainings and a beam small enough for a test (2 languages,
    5 test sentences, 6 + 12 updates, beam 2); run it with ``--nbpe 120``."""
    recipe = make_recipe(root)
    corpus = yaml.safe_load((recipe / "conf" / "corpus.yaml").read_text())
    corpus["languages"] = [lang for lang in corpus["languages"] if lang["code"] in ("deu", "eng")]
    corpus["sentences"] = {"train": 60, "dev": 6, "test": 5}
    (recipe / "conf" / "corpus.yaml").write_text(yaml.safe_dump(corpus))
    train = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    train.update(max_epoch=2, num_iters_per_epoch=6, batch_bins=300000, keep_nbest_models=2)
    train["scheduler_conf"]["warmup_steps_list"] = [0, 2, 12]
    train["model_conf"]["gate_conf"].update(tau_anneal_steps=4)
    train["model_conf"]["sparsity_conf"].update(ramp_steps=4)
    (recipe / "conf" / "train.yaml").write_text(yaml.safe_dump(train))
    pretrain = yaml.safe_load((recipe / "conf" / "pretrain.yaml").read_text())
    pretrain.update(max_epoch=1, scheduler_conf={"warmup_steps_list": [0, 2, 6], "warmup_lr_list": [0.0, 0.002, 0.001]})
    (recipe / "conf" / "pretrain.yaml").write_text(yaml.safe_dump(pretrain))
    budget = yaml.safe_load((recipe / "conf" / "sweep_budget.yaml").read_text())
    budget.update(max_epoch=4, scheduler_conf={**train["scheduler_conf"], "warmup_steps_list": [0, 2, 24]})
    (recipe / "conf" / "sweep_budget.yaml").write_text(yaml.safe_dump(budget))
    decode = yaml.safe_load((recipe / "conf" / "decode.yaml").read_text())
    decode.update(beam_size=2, maxlenratio=0.3)
    (recipe / "conf" / "decode.yaml").write_text(yaml.safe_dump(decode))
    return recipe


@pytest.mark.slow
@needs_espeak
def test_reduced_recipe_end_to_end_then_skips_finished_stages(tmp_path):
    recipe = make_reduced_recipe(tmp_path / "recipe")
    train = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    proc = run_recipe(recipe, "--nbpe", "120", "--nj", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ETA" in proc.stderr  # training progress

    results = recipe / "exp" / "s2t_train" / "results"
    test_sets = (recipe / "dump" / "raw" / "test_sets.txt").read_text().split()
    assert sorted(test_sets) == ["test_deu_asr", "test_deu_st_eng", "test_eng_asr"]
    scores = json.loads((results / "scores.json").read_text())
    for row in scores:
        assert set(row) == {"test_set", "lang", "task", "metric", "value", "n_utts"}
        if row["metric"] in ("bleu", "chrf"):
            assert 0 <= row["value"] <= 100
        else:
            assert row["metric"] in ("wer", "cer") and row["value"] >= 0
    per_set = {(r["test_set"], r["metric"]): r for r in scores}
    assert per_set[("test_deu_asr", "wer")]["n_utts"] == 5 and per_set[("test_eng_asr", "wer")]["lang"] == "eng"
    assert ("test_deu_st_eng", "bleu") in per_set and ("test_deu_st_eng", "chrf") in per_set

    lines = (results / "usage.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["lang", "task", "side", "layer", "module", "keep_rate", "n_utts"]
    rows = [line.split("\t") for line in lines[1:]]
    n_enc, n_dec = train["encoder_conf"]["num_blocks"], train["decoder_conf"]["num_blocks"]
    for lang, task in (("deu", "asr"), ("deu", "st_eng"), ("eng", "asr")):
        mine = [r for r in rows if r[:2] == [lang, task]]
        assert len(mine) == n_enc * len(ENCODER_MODULES) + n_dec * len(DECODER_MODULES)
        assert all(0.0 <= float(r[5]) <= 1.0 and int(r[6]) == 5 for r in mine)
        assert (results / f"usage_{lang}_{task}.png").stat().st_size > 0
    report = (results / "RESULTS.md").read_text()
    for section in ("## The gated model against the reference", "## Scores", "## Module usage", "## Compute"):
        assert section in report, section
    assert report.index("## The gated model against the reference") < report.index("## Scores")  # it opens
    assert "| **asr (mean of 2)** | asr | WER |" in report and "| **st_eng (mean of 1)** | st_eng | BLEU |" in report
    # the dense pretraining, then two fine-tunings of it with the same schedule: gated, and the reference
    exp = recipe / "exp"
    # distillation (conf/train.yaml's distill_conf): the reference trains first and teaches the gated model
    teacher = "exp/s2t_train_reference/valid.acc.ave.pth"
    gated_config = yaml.safe_load((exp / "s2t_train" / "config.yaml").read_text())
    assert gated_config["model_conf"]["distill_conf"]["teacher_model"] == teacher
    assert proc.stderr.index("(exp/s2t_train_reference)") < proc.stderr.index(f"learns from {teacher}")
    reported = torch.load(exp / "s2t_train" / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]
    assert all("loss_distill" in phases["train"] for phases in reported["stats"].values())
    pretrained = torch.load(exp / "s2t_train_pretrain" / "valid.acc.ave.pth", map_location="cpu")
    reference = torch.load(exp / "s2t_train_reference" / "valid.acc.ave.pth", map_location="cpu")
    gated = torch.load(exp / "s2t_train" / "valid.acc.ave.pth", map_location="cpu")
    assert not any(k.startswith("gate_predictor.") for k in (*pretrained, *reference))
    assert set(gated) - set(reference) == {
        k for k in gated if k.startswith(("gate_predictor.", "sparsity_controller."))
    }
    # optimizer updates of the best epoch (1 or 2, 6 each): keep_nbest_models 2 averages the backbone only
    assert int(gated["gate_predictor.train_steps"]) in (6, 12)
    ref_scores = json.loads((exp / "s2t_train_reference" / "results" / "scores.json").read_text())
    assert {r["test_set"] for r in ref_scores} >= set(test_sets)
    # the reference is decoded with every gate open: the gated model's targets are not checked on it (score --all_open)
    assert "targets" not in json.loads((exp / "s2t_train_reference" / "results" / "summary.json").read_text())
    assert "s2t_train_reference/results: decoder" not in proc.stderr
    ref_gates = (exp / "s2t_train_reference" / "decode" / "test_deu_asr" / "1best_recog" / "gates").read_text()
    assert all(
        line.split(" ", 1)[1] == "enc=1111.1111.1111.1111 dec=111.111.111.111" for line in ref_gates.splitlines()
    )
    assert "| test_deu_asr | deu | asr | wer |" in report and "| test_deu_st_eng | deu | st_eng | bleu |" in report
    gates = (recipe / "exp" / "s2t_train" / "decode" / "test_deu_asr" / "1best_recog" / "gates").read_text()
    assert len(gates.splitlines()) == 5 and "enc=" in gates and "dec=" in gates

    marker_times = {p: p.stat().st_mtime for p in recipe.rglob(".stage*.done")}
    assert len(marker_times) == 8  # stages 1, 3, 4, 5, 10, 11, 12, 13
    proc = run_recipe(recipe, "--nbpe", "120", "--nj", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("already done") == 8
    assert {p: p.stat().st_mtime for p in recipe.rglob(".stage*.done")} == marker_times

    # stage 17 at one target of one side: a fine-tuning from the pretrained model, decoded with the reference;
    # and the side's budget-conditioned model (one fine-tuning), decoded at two budgets, one of them the target's
    proc = run_recipe(
        recipe, "--nbpe", "120", "--nj", "2", "--stage", "17", "--stop_stage", "17", "--sweep_targets", "0.5",
        "--sweep_sides", "dec", "--budget_points", "0.50 0.75",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = recipe / "exp" / "s2t_train_sweep"
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    runs = {r["run"]: r for r in sweep["runs"]}
    assert list(runs) == ["reference", "dec0.5", "dec_budget@0.50", "dec_budget@0.75"]
    # the budget model at 0.50 paired with the model trained for 0.5: the change of each task's average, its interval
    [pair] = sweep["versus"]
    assert (pair["run"], pair["against"]) == ("dec_budget@0.50", "dec0.5")
    for key, change in pair["changes"].items():
        expected = runs["dec_budget@0.50"]["averages"][key] - runs["dec0.5"]["averages"][key]
        assert change["change"] == pytest.approx(expected, abs=1e-6), key
        assert change["ci95"][0] <= change["change"] <= change["ci95"][1], key
    assert set(pair["changes"]) >= {"asr/wer", "st_eng/bleu"}
    assert "| dec_budget@0.50 | dec0.5 | " in (sweep_dir / "sweep.md").read_text()
    assert (sweep_dir / "sweep.png").stat().st_size > 0 and "dec0.5" in (sweep_dir / "sweep.md").read_text()
    fine_tuned = torch.load(sweep_dir / "dec0.5" / "valid.acc.ave.pth", map_location="cpu")
    assert int(fine_tuned["gate_predictor.train_steps"]) in (6, 12)  # its own fine-tuning from the pretrained model
    budgeted = torch.load(sweep_dir / "dec_budget" / "valid.acc.ave.pth", map_location="cpu")
    # conf/sweep_budget.yaml reaches the budget model alone: twice the epochs, a share of the draws at the top
    fixed_config, budget_config = (
        yaml.safe_load((sweep_dir / run / "config.yaml").read_text()) for run in ("dec0.5", "dec_budget")
    )
    assert (fixed_config["max_epoch"], budget_config["max_epoch"]) == (2, 4)
    assert "budget" not in fixed_config["model_conf"]["sparsity_conf"]
    shipped = yaml.safe_load((REPO / "conf" / "sweep_budget.yaml").read_text())["model_conf"]["sparsity_conf"]
    assert budget_config["model_conf"]["sparsity_conf"]["budget"]["top_share"] == shipped["budget"]["top_share"] > 0
    # (sides, tasks, knots, 2): one model, many budgets, each task held to it as conf/train.yaml holds the gated model
    assert (
        budgeted["sparsity_controller.lambdas"].shape[:2] == (2, 2)
        and budgeted["sparsity_controller.lambdas"].dim() == 4
    )
    fixed_summary = json.loads((sweep_dir / "dec0.5" / "results" / "summary.json").read_text())
    assert fixed_summary["targets"] == {"enc": None, "dec": {"asr": 0.5, "st_eng": 0.5}}
    for point in ("0.50", "0.75"):
        gates = sweep_dir / "dec_budget" / f"at{point}" / "decode" / "test_deu_asr" / "1best_recog" / "gates"
        lines = gates.read_text().splitlines()
        assert all(line.endswith(f"budget=0.00,{float(point):.2f}") for line in lines)
        summary = json.loads((sweep_dir / "dec_budget" / f"at{point}" / "results" / "summary.json").read_text())
        assert summary["budget"] == [0.0, float(point)]
        assert summary["targets"]["dec"] == {"asr": float(point), "st_eng": float(point)}
        # held to the budget: each utterance closes 6 (0.5) or 9 (0.75) of the 4 x 3 decoder modules
        closed = {sum(1 - bit for row in parse_mask(line.split(" ", 1)[1])["dec"] for bit in row) for line in lines}
        assert closed == {round(float(point) * n_dec * len(DECODER_MODULES))}, (point, closed)
