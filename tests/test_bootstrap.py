"""Paired bootstrap intervals of the changes against the reference: a hand-computed case, sacrebleu's own
paired test for BLEU, the task mean's independent resamples, and the mean and spread over seeds."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest, estimate_ci
from test_scoring import write_decode_set, write_ref_set

from espnet_gated.bin import score
from espnet_gated.recipe.scoring import (
    interval,
    mean_of_sets,
    paired_bootstrap,
    resampled_scores,
    utterance_stats,
)

# Two utterances of 4 and 6 words. The reference gets utterance 2 wrong by 3 words, the gated model
# utterance 1 by 2 words: WER 30% and 20%, change -10. The four equally likely resamples:
# {1, 1}: 0/8 against 4/8 -> +50; {2, 2}: 6/12 against 0/12 -> -50; {1, 2} and {2, 1}: -10.
ASR_REFS = {"u1": "eins zwei drei vier", "u2": "a b c d e f"}
ASR_REFERENCE = {"u1": "eins zwei drei vier", "u2": "a x y z e f"}
ASR_GATED = {"u1": "eins zwei", "u2": "a b c d e f"}


def test_wer_statistics_are_jiwers_counts_and_sum_to_the_corpus_wer():
    refs, hyps = list(ASR_REFS.values()), list(ASR_GATED.values())
    assert utterance_stats("wer", refs, list(ASR_REFERENCE.values()), "deu") == [[0, 4], [3, 6]]
    assert utterance_stats("wer", refs, hyps, "deu") == [[2, 4], [0, 6]]
    assert utterance_stats("cer", ["ab cd"], ["abce"], "zho") == [[1, 4]]  # characters without spaces


def test_wer_interval_of_a_hand_computed_case():
    reference, gated = [[0, 4], [3, 6]], [[2, 4], [0, 6]]
    changes = paired_bootstrap("wer", "deu", reference, gated, 1000)
    values, counts = np.unique(np.round(changes, 9), return_counts=True)
    assert values.tolist() == [-50.0, -10.0, 50.0]  # only the resamples worked out above
    assert counts / 1000 == pytest.approx([0.25, 0.5, 0.25], abs=0.05)
    assert interval(changes) == (-50.0, 50.0)  # each end holds a quarter of the resamples, more than 2.5%
    # one utterance: every resample is that utterance, the interval is the change itself
    assert interval(paired_bootstrap("wer", "deu", [[1, 5]], [[2, 5]], 1000)) == pytest.approx((20.0, 20.0))


def test_wer_resamples_the_utterances_sacrebleu_draws():
    """Utterance i scored as i errors in 1 word: each resample's WER is 100 x the sum of its indices, so the
    resamples are sacrebleu's index rows (numpy's default_rng(12345), 1000 rows of n draws)."""
    n = 7
    scores = resampled_scores("wer", [[i, 1] for i in range(n)], "deu", 1000)
    rows = np.random.default_rng(12345).choice(n, size=(1000, n), replace=True)
    assert scores == pytest.approx(100 * rows.sum(axis=1) / n)


def test_bleu_resamples_are_sacrebleus_paired_bootstrap():
    """Our BLEU resamples of both systems give the means and intervals of sacrebleu's own paired bootstrap test."""
    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat table red big small house".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(40)]

    def perturb(sentence: str, p: float) -> str:
        return " ".join(rng.choice(words) if rng.random() < p else w for w in sentence.split())

    reference, gated = [perturb(r, 0.15) for r in refs], [perturb(r, 0.3) for r in refs]
    ref_stats, gated_stats = (utterance_stats("bleu", refs, hyps, "eng") for hyps in (reference, gated))
    ref_samples = resampled_scores("bleu", ref_stats, "eng", 1000)
    gated_samples = resampled_scores("bleu", gated_stats, "eng", 1000)
    _, results = PairedTest(
        [("reference", reference), ("gated", gated)], {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=1000
    )()
    for samples, result in zip((ref_samples, gated_samples), results["BLEU"], strict=True):
        assert (samples.mean(), (interval(samples)[1] - interval(samples)[0]) / 2) == pytest.approx(
            (result.mean, result.ci), abs=1e-9
        )
        assert estimate_ci(samples)[1] == pytest.approx(result.ci, abs=1e-9)
    changes = paired_bootstrap("bleu", "eng", ref_stats, gated_stats, 1000)
    assert changes == pytest.approx(gated_samples - ref_samples)
    low, high = interval(changes)
    observed = BLEU().corpus_score(gated, [refs]).score - BLEU().corpus_score(reference, [refs]).score
    assert low < observed < high < 0  # the worse system is worse in 97.5% of the resamples


def test_a_task_mean_resamples_each_set_on_its_own():
    """Two sets of the same size get the same index rows from sacrebleu; the task mean pairs them with
    other rows, so both sets are at their maximum together in 1/16 of the resamples, not 1/4."""
    changes = paired_bootstrap("wer", "deu", [[0, 4], [3, 6]], [[2, 4], [0, 6]], 1000)
    again = paired_bootstrap("wer", "fra", [[0, 4], [3, 6]], [[2, 4], [0, 6]], 1000)
    assert np.array_equal(changes, again)  # what sacrebleu draws for a second set of 2 utterances
    mean = mean_of_sets([changes, again])
    assert np.mean(np.isclose(mean, 50.0)) == pytest.approx(1 / 16, abs=0.025)
    assert interval(mean) == (-50.0, 50.0)


def test_an_unseeded_bootstrap_is_refused(monkeypatch):
    monkeypatch.setenv("SACREBLEU_SEED", "none")
    with pytest.raises(ValueError, match="SACREBLEU_SEED=none: the paired bootstrap needs an integer seed"):
        resampled_scores("wer", [[1, 2]], "deu", 10)


# ---------------------------------------------------------------- the results directory
ST_REFS = {f"s{i}": f"Sentence number {i} is about the red house." for i in range(6)}


def decode(root: Path, asr: dict, st_changes: dict) -> Path:
    """A decode of test_deu_asr and test_deu_st_eng; ``st_changes`` replaces some translations."""
    write_decode_set(root, "test_deu_asr", asr)
    write_decode_set(root, "test_deu_st_eng", {**ST_REFS, **st_changes}, prefix="<deu> <st_eng> <notimestamps>")
    return root


def score_dir(refs: Path, decode_dir: Path, out: Path, *extra: str) -> dict:
    score.main(
        ["--ref_root", str(refs), "--decode_dir", str(decode_dir), "--test_sets", "test_deu_asr test_deu_st_eng"]
        + ["--out", str(out), *extra]
    )
    return json.loads((out / "summary.json").read_text())


@pytest.fixture
def refs(tmp_path):
    write_ref_set(tmp_path / "ref", "test_deu_asr", "deu", "asr", ASR_REFS)
    write_ref_set(tmp_path / "ref", "test_deu_st_eng", "deu", "st_eng", ST_REFS)
    return tmp_path / "ref"


def test_results_give_every_change_its_interval_and_the_spread_over_seeds(refs, tmp_path):
    # seed 1: the hand-computed ASR case; ST loses words in two sentences
    score_dir(refs, decode(tmp_path / "r1", ASR_REFERENCE, {}), tmp_path / "r1/results")
    st_gated = {"s1": "Sentence number 1 is about a house.", "s4": "Number 4 is the red house."}
    one = score_dir(
        refs, decode(tmp_path / "g1", ASR_GATED, st_gated), tmp_path / "g1/results",
        "--reference", str(tmp_path / "r1/results"), "--reference_label", "dense",
    )  # fmt: skip
    rows = {(r["test_set"], r["task"]): r for r in one["comparison"]["rows"]}
    asr = rows[("test_deu_asr", "asr")]
    assert (asr["reference"], asr["gated"], asr["change"], *asr["ci95"]) == pytest.approx((30, 20, -10, -50, 50))
    st = rows[("test_deu_st_eng", "st_eng")]
    assert st["change"] < 0 and st["ci95"][0] < st["change"] <= st["ci95"][1] <= 0
    assert rows[("macro_avg", "asr")]["ci95"] == pytest.approx([-50, 50])  # one set: its own interval
    assert one["comparison"]["bootstrap"] == {
        "method": "paired bootstrap over utterances (sacrebleu.significance resampling)", "samples": 1000, "seed": 12345
    }  # fmt: skip
    md = (tmp_path / "g1/results/RESULTS.md").read_text()
    assert "| test_deu_asr | asr | WER | 30.00 | 20.00 | -10.00 (lower is better) | [-50.00, +50.00] |" in md
    assert "95% CI: paired bootstrap over the test utterances (1000 resamples" in md
    before = (tmp_path / "g1/results/summary.json").read_text()
    score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", "--reference", str(tmp_path / "r1/results"),
              "--reference_label", "dense")  # fmt: skip
    assert (tmp_path / "g1/results/summary.json").read_text() == before  # seeded: the same intervals again

    # seed 2: the reference is perfect, the gated model misses one word of 10: change +10
    score_dir(refs, decode(tmp_path / "r2", ASR_REFS, {}), tmp_path / "r2/results")
    score_dir(refs, decode(tmp_path / "g2", {**ASR_REFS, "u1": "eins zwei drei"}, {}), tmp_path / "g2/results",
              "--reference", str(tmp_path / "r2/results"))  # fmt: skip
    seeds = ["--seed_runs", f"1={tmp_path / 'g1/results'}", f"2={tmp_path / 'g2/results'}"]
    both = score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", "--reference", str(tmp_path / "r1/results"),
                     "--reference_label", "dense", *seeds)  # fmt: skip
    assert both["seeds"]["seeds"] == ["1", "2"]
    asr = next(r for r in both["seeds"]["rows"] if r["test_set"] == "test_deu_asr")
    assert [r["change"] for r in asr["per_seed"]] == pytest.approx([-10, 10])
    assert asr["change"] == pytest.approx({"mean": 0.0, "std": 200**0.5})  # n - 1
    assert asr["reference"] == pytest.approx({"mean": 15.0, "std": 450**0.5})
    md = (tmp_path / "g1/results/RESULTS.md").read_text()
    assert md.index("## Over 2 seeds") < md.index("## The gated model against the reference without pruning (seed 1)")
    assert "| test_deu_asr | asr | WER | 1 | 30.00 | 20.00 | -10.00 | [-50.00, +50.00] |" in md
    assert "| test_deu_asr | asr | WER | 2 | 0.00 | 10.00 | +10.00 |" in md
    assert "| test_deu_asr | asr | WER | **mean ± std** | 15.00 ± 21.21 | 15.00 ± 7.07 | **+0.00 ± 14.14** |" in md
    assert "| **st_eng (mean of 1)** | st_eng | BLEU | **mean ± std** |" in md


def test_bad_seed_runs_and_old_references_are_named(refs, tmp_path):
    score_dir(refs, decode(tmp_path / "r1", ASR_REFERENCE, {}), tmp_path / "r1/results")
    reference = ["--reference", str(tmp_path / "r1/results")]
    score_dir(refs, decode(tmp_path / "g1", ASR_GATED, {}), tmp_path / "g1/results", *reference)
    with pytest.raises(SystemExit, match=r"r1/results/summary.json: seed 2 has no comparison with its reference"):
        score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", *reference,
                  "--seed_runs", f"1={tmp_path / 'g1/results'}", f"2={tmp_path / 'r1/results'}")  # fmt: skip
    with pytest.raises(SystemExit, match=r"must be one of the seeds'"):
        score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", *reference,
                  "--seed_runs", f"2={tmp_path / 'r1/results'}", f"3={tmp_path / 'r1/results'}")  # fmt: skip
    with pytest.raises(SystemExit, match=r"'2:dir' is not SEED=RESULTS_DIR"):
        score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", "--seed_runs", "2:dir")
    (tmp_path / "r1/results/utterance_stats.json").unlink()  # a reference scored by an older version
    with pytest.raises(SystemExit, match=r"r1/results/utterance_stats.json: not found .*score that decode again"):
        score_dir(refs, tmp_path / "g1", tmp_path / "g1/results", *reference)
