"""--seeds: stages 11-13 once per seed (ESPnet's --seed), the first seed where a run without --seeds
leaves its outputs, the others in exp/<tag>_seedN*, and the mean and spread over seeds in RESULTS.md."""

import json

import pytest
import torch
import yaml
from test_recipe import make_recipe, make_reduced_recipe, needs_espeak, run_recipe


def test_seeds_are_documented_and_checked(tmp_path):
    recipe = make_recipe(tmp_path / "r")
    proc = run_recipe(recipe, "--help")
    assert '  --seeds [""] stage 11-13: training seeds' in proc.stdout
    assert "seed N in exp/<tag>_seedN/, exp/<tag>_seedN_pretrain/, exp/<tag>_seedN_reference/" in proc.stdout
    assert '--seeds "0 1 2" after a plain run keeps its models' in proc.stdout
    proc = run_recipe(recipe, "--seeds", "1 two")
    assert proc.returncode != 0 and "--seeds: 'two' is not a non-negative integer" in proc.stderr
    proc = run_recipe(recipe, "--seeds", "3 1 3")
    assert proc.returncode != 0 and "--seeds: seed 3 is given twice" in proc.stderr
    assert not (recipe / "data").exists()  # refused before stage 1


@pytest.mark.slow
@needs_espeak
def test_seeds_beside_a_finished_run_train_decode_and_score_each_then_report_mean_and_spread(tmp_path):
    recipe = make_reduced_recipe(tmp_path / "recipe")
    proc = run_recipe(recipe, "--nbpe", "120", "--nj", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = recipe / "exp"
    first = {p: p.stat().st_mtime for p in (exp / "s2t_train").glob("*.pth")}

    # seed 0 is conf/train.yaml's: the run above stays (stages 11 and 12 already done), seed 2 joins it
    proc = run_recipe(recipe, "--nbpe", "120", "--nj", "2", "--seeds", "0 2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("already done") == 5 + 2  # stages 1-10, and 11-12 of seed 0
    assert {p: p.stat().st_mtime for p in (exp / "s2t_train").glob("*.pth")} == first
    runs = {0: "s2t_train", 2: "s2t_train_seed2"}
    pretrained = {}
    for seed, tag in runs.items():
        for suffix in ("_pretrain", "", "_reference"):
            config = yaml.safe_load((exp / f"{tag}{suffix}" / "config.yaml").read_text())
            assert config["seed"] == seed, f"{tag}{suffix}"  # ESPnet's --seed 2 over the config's seed 0
        pretrained[seed] = torch.load(exp / f"{tag}_pretrain" / "valid.acc.ave.pth", map_location="cpu")
        gates = (exp / tag / "decode" / "test_deu_asr" / "1best_recog" / "gates").read_text().splitlines()
        assert len(gates) == 5
        assert (exp / f"{tag}_reference" / "decode" / "test_deu_asr" / "1best_recog" / "text").is_file()
        comparison = json.loads((exp / tag / "results" / "summary.json").read_text())["comparison"]
        assert comparison["reference"].startswith(f"exp/{tag}_reference: ")
        for row in comparison["rows"]:
            low, high = row["ci95"]
            assert low <= high and row["metric"] in ("wer", "bleu")
    assert not all(torch.equal(pretrained[0][k], pretrained[2][k]) for k in pretrained[0])  # two seeds, two models

    summary = json.loads((exp / "s2t_train" / "results" / "summary.json").read_text())
    assert summary["seeds"]["seeds"] == ["0", "2"]
    assert summary["seeds"]["results_dirs"] == ["exp/s2t_train/results", "exp/s2t_train_seed2/results"]
    seed2 = json.loads((exp / "s2t_train_seed2" / "results" / "summary.json").read_text())["comparison"]["rows"]
    for row, theirs in zip(summary["seeds"]["rows"], seed2, strict=True):
        changes = [r["change"] for r in row["per_seed"]]
        assert changes[1] == theirs["change"]
        assert row["change"]["mean"] == pytest.approx(sum(changes) / 2)
        assert row["change"]["std"] == pytest.approx(abs(changes[0] - changes[1]) / 2**0.5)
    report = (exp / "s2t_train" / "results" / "RESULTS.md").read_text()
    excerpt = report[report.index("## Over 2 seeds") : report.index("## Scores")]
    print(excerpt)  # shown with pytest -s
    for name, task, metric in (("test_deu_asr", "asr", "WER"), ("**st_eng (mean of 1)**", "st_eng", "BLEU")):
        for seed in ("0", "2", "**mean ± std**"):
            assert f"| {name} | {task} | {metric} | {seed} | " in excerpt
    assert report.index("## Over 2 seeds") < report.index("without pruning (seed 0)") < report.index("## Scores")

    markers = {p: p.stat().st_mtime for p in recipe.rglob(".stage*.done")}
    assert len(markers) == 5 + 3 * 2  # stages 1-10 once, 11-13 per seed
    proc = run_recipe(recipe, "--nbpe", "120", "--nj", "2", "--seeds", "0 2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("already done") == 11
    assert {p: p.stat().st_mtime for p in recipe.rglob(".stage*.done")} == markers
