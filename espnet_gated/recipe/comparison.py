"""The gated model against the reference without pruning: per test set and task the quality of both, the change with
its paired bootstrap 95% interval, sparsity, executed MACs and decode times (summary.json's ``comparison``, the table
RESULTS.md opens with), and the same over several seeds (summary.json's ``seeds``)."""

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_gated.recipe.results import (
    UTTERANCE_STATS,
    fmt,
    main_metric,
    markdown_table,
    read_results,
    read_utterance_stats,
)
from espnet_gated.recipe.scoring import (
    BOOTSTRAP_SAMPLES,
    LOWER_IS_BETTER,
    bootstrap_seed,
    interval,
    mean_of_sets,
    paired_bootstrap,
)
from espnet_gated.utils import PathLike

#: how far the measured inference sparsity may be from the training config's target
TARGET_TOLERANCE = 0.03


#: the paper's headline (Someki et al., ICLR 2025: OWSM v3.1 medium on Europarl-ST), quoted next to ours
PAPER_HEADLINE = (
    "The paper (OWSM v3.1 medium fine-tuned on Europarl-ST, 50% decoder sparsity): decode time -28.6% for ASR "
    "with WER +2.8, -34.3% for ST with no BLEU loss."
)


BOOTSTRAP_METHOD = "paired bootstrap over utterances (sacrebleu.significance resampling)"


#: the comparison's values averaged over seeds
SEED_KEYS = ("reference", "gated", "change", "enc_skip", "dec_skip", "relative_macs", "speed_up")


def target_report(summary: Mapping[str, object]) -> Tuple[str, List[str]]:
    """A sentence on the measured sparsity against the training config's targets, and the misses."""
    targets, measured = summary.get("targets") or {}, summary.get("gated_sparsity") or {}
    per_task = summary.get("gated_sparsity_per_task") or {}
    parts, misses = [], []
    for side, name in (("enc", "encoder"), ("dec", "decoder")):
        target = targets.get(side)
        if isinstance(target, dict):  # per task: each task over its own utterances
            checks = [(f"{name} {task}", t, per_task.get(task, {}).get(side)) for task, t in target.items()]
        else:
            checks = [(name, target, measured.get(side))]
        for label, goal, value in checks:
            if goal is None or value is None:
                continue
            parts.append(f"{label} {value:.3f} (target {goal:g})")
            if abs(value - goal) > TARGET_TOLERANCE:
                miss = f"{label} sparsity {value:.3f} misses its target {goal:g} by more than {TARGET_TOLERANCE}"
                misses.append(miss)
    if not parts:
        return "", []
    text = f"Measured sparsity of the gated modules at inference over all {summary['n_utts']} test utterances: "
    text += ", ".join(parts) + ("; " + "; ".join(misses).upper() if misses else f": on target (+-{TARGET_TOLERANCE}).")
    return text, misses


def resampled_change(
    name: str, mine: Mapping, theirs: Optional[Mapping], reference_dir: PathLike, n_samples: int
) -> np.ndarray:
    """The bootstrap resamples of the change on set ``name`` (gated minus reference, the same utterances)."""
    where = Path(reference_dir) / UTTERANCE_STATS
    if theirs is None:
        raise ValueError(f"{where}: no statistics for test set '{name}'")
    if (theirs["metric"], theirs["utts"]) != (mine["metric"], mine["utts"]):
        raise ValueError(
            f"{where}: test set '{name}' was scored by {theirs['metric']} on {len(theirs['utts'])} utterances, "
            f"this decode by {mine['metric']} on {len(mine['utts'])}: not the same test set; score both again"
        )
    return paired_bootstrap(mine["metric"], mine["target"], theirs["stats"], mine["stats"], n_samples)


def _ratio(reference_s: Optional[float], gated_s: Optional[float]) -> Optional[float]:
    return reference_s / gated_s if reference_s and gated_s else None


def comparison(
    rows: Sequence[Mapping],
    summary: Mapping,
    utt_stats: Mapping[str, Mapping],
    reference_dir: PathLike,
    label: str,
    n_samples: int = BOOTSTRAP_SAMPLES,
) -> Dict[str, object]:
    """The comparison with the reference without pruning as data (summary.json's ``comparison``): per test
    set and per task (mean of its sets), quality of both, the change with its paired bootstrap 95%
    interval, sparsity, executed MACs, decode time and speed-up."""
    ref_rows, ref_summary = read_results(reference_dir)
    ref_stats = read_utterance_stats(reference_dir)
    table, tasks = [], {}
    for name, mine in summary["per_set"].items():
        theirs = ref_summary["per_set"].get(name)
        ours, ref = main_metric(rows, name, mine["task"]), main_metric(ref_rows, name, mine["task"])
        if theirs is None or ours is None or ref is None:
            raise ValueError(f"{reference_dir}: the reference has no scores for test set '{name}'")
        changes = resampled_change(name, utt_stats[name], ref_stats.get(name), reference_dir, n_samples)
        task = tasks.setdefault(mine["task"], {"metric": ours[0], "sets": [], "changes": []})
        task["sets"].append((mine, theirs))
        task["changes"].append(changes)
        timing = (theirs["decode_s_per_utt"], mine["decode_s_per_utt"])
        table.append(
            {
                "test_set": name,
                "task": mine["task"],
                "metric": ours[0],
                "reference": ref[1],
                "gated": ours[1],
                "change": ours[1] - ref[1],
                "ci95": interval(changes),
                "enc_skip": mine["enc_sparsity"],
                "dec_skip": mine["dec_sparsity"],
                "relative_macs": mine["relative_flops"],
                "reference_s_per_utt": timing[0],
                "gated_s_per_utt": timing[1],
                "speed_up": _ratio(*timing),
            }
        )
    for task, info in tasks.items():
        metric = info["metric"]
        ours, ref = (
            next(r["value"] for r in rs if r["test_set"] == "macro_avg" and r["task"] == task and r["metric"] == metric)
            for rs in (rows, ref_rows)
        )
        pairs = info["sets"]

        def mean_time(i: int, pairs=pairs) -> Optional[float]:
            timed = [p[i] for p in pairs if p[i]["decode_s_per_utt"] is not None]
            n = sum(p["n_utts"] for p in timed)
            return sum(p["decode_s_per_utt"] * p["n_utts"] for p in timed) / n if timed and n else None

        def mean_of(key: str, pairs=pairs) -> Optional[float]:
            values = [(m[key], m["n_utts"]) for m, _ in pairs if m[key] is not None]
            return sum(v * n for v, n in values) / sum(n for _, n in values) if values else None

        macs = [m for m, _ in pairs if m["macs"] is not None]
        timing = (mean_time(1), mean_time(0))
        table.append(
            {
                "test_set": "macro_avg",
                "task": task,
                "metric": metric,
                "n_sets": len(pairs),
                "reference": ref,
                "gated": ours,
                "change": ours - ref,
                "ci95": interval(mean_of_sets(info["changes"])),
                "enc_skip": mean_of("enc_sparsity"),
                "dec_skip": mean_of("dec_sparsity"),
                "relative_macs": sum(m["macs"] for m in macs) / sum(m["dense_macs"] for m in macs) if macs else None,
                "reference_s_per_utt": timing[0],
                "gated_s_per_utt": timing[1],
                "speed_up": _ratio(*timing),
            }
        )
    bootstrap = {"method": BOOTSTRAP_METHOD, "samples": n_samples, "seed": bootstrap_seed()}
    return {"reference": label, "reference_dir": str(reference_dir), "bootstrap": bootstrap, "rows": table}


def change_text(value: float) -> str:
    return f"{value:+.2f}"


def ci_text(bounds: Sequence[float]) -> str:
    return f"[{bounds[0]:+.2f}, {bounds[1]:+.2f}]"


def _row_label(row: Mapping) -> str:
    return row["test_set"] if row["test_set"] != "macro_avg" else f"**{row['task']} (mean of {row['n_sets']})**"


def _time_columns(row: Mapping) -> List[str]:
    reference_s, gated_s = row["reference_s_per_utt"], row["gated_s_per_utt"]
    if not reference_s or not gated_s:
        return ["-"] * 4
    return [f"{1000 * reference_s:.1f}", f"{1000 * gated_s:.1f}", f"{100 * (gated_s / reference_s - 1):+.1f}%",
            f"{reference_s / gated_s:.2f}x"]  # fmt: skip


def bootstrap_note(bootstrap: Mapping) -> str:
    return (
        f"95% CI: paired bootstrap over the test utterances ({bootstrap['samples']} resamples of sacrebleu's "
        f"paired bootstrap resampling, seed {bootstrap['seed']}; BLEU on its n-gram statistics, WER/CER on jiwer's "
        "error and reference word counts of the same resampled utterances); a task's mean resamples every set on "
        "its own. An interval that excludes 0 is a change at the 5% level."
    )


def comparison_markdown(data: Mapping, summary: Mapping, seed: str = "") -> str:
    """The comparison (:func:`comparison`) in the form of the paper's Table 1."""
    header = (
        *("test set", "task", "metric", "reference", "gated", "change", "change 95% CI", "enc skip", "dec skip"),
        *("MACs (rel.)", "ref. ms/utt", "gated ms/utt", "decode time", "speed-up"),
    )
    table = [
        (
            _row_label(row),
            row["task"],
            row["metric"].upper(),
            f"{row['reference']:.2f}",
            f"{row['gated']:.2f}",
            change_text(row["change"]) + (" (lower is better)" if row["metric"] in LOWER_IS_BETTER else ""),
            ci_text(row["ci95"]),
            fmt(row["enc_skip"], 2),
            fmt(row["dec_skip"], 2),
            fmt(row["relative_macs"], 2),
            *_time_columns(row),
        )
        for row in data["rows"]
    ]
    text, _ = target_report(summary)
    return (
        "## The gated model against the reference without pruning" + (f" (seed {seed})" if seed else "") + "\n\n"
        f"Reference: {data['reference']}. Both decoded in the same jobs, interleaved set by set (decode times side by "
        "side: wall time per utterance of the whole decode, batched as configured). MACs: executed against "
        "the same model with every module kept. Quality changes are absolute points. "
        f"{bootstrap_note(data['bootstrap'])}\n\n"
        + (f"{text}\n\n" if text else "")
        + markdown_table(header, table)
        + f"\n{PAPER_HEADLINE}\n"
    )


def _mean_std(values: Sequence[Optional[float]]) -> Optional[Dict[str, float]]:
    """Mean and sample standard deviation (n - 1) over seeds; None if a seed lacks the value."""
    if any(v is None for v in values):
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}


def across_seeds(runs: Sequence[Tuple[str, PathLike, Mapping]]) -> Dict[str, object]:
    """Every comparison row of every seed, with the mean and standard deviation over the seeds of the
    reference, the gated model, the change, the skip rates and the speed-up (summary.json's ``seeds``).
    ``runs``: (seed, results directory, that seed's :func:`comparison`)."""
    if len(runs) < 2:
        raise ValueError(f"seeds: {len(runs)} run(s); the mean and spread over seeds need two or more")
    keys = [(r["test_set"], r["task"], r["metric"]) for r in runs[0][2]["rows"]]
    for seed, results_dir, data in runs[1:]:
        theirs = [(r["test_set"], r["task"], r["metric"]) for r in data["rows"]]
        if theirs != keys:
            raise ValueError(
                f"{results_dir}: seed {seed} was compared on {theirs}, seed {runs[0][0]} on {keys}: "
                "score every seed on the same test sets"
            )
    rows = []
    for i, (test_set, task, metric) in enumerate(keys):
        per_seed = [{"seed": seed, **data["rows"][i]} for seed, _, data in runs]
        spread = {key: _mean_std([r[key] for r in per_seed]) for key in SEED_KEYS}
        rows.append({"test_set": test_set, "task": task, "metric": metric, "per_seed": per_seed, **spread})
    return {"seeds": [seed for seed, _, _ in runs], "results_dirs": [str(d) for _, d, _ in runs], "rows": rows}


def _spread(stats: Optional[Mapping[str, float]]) -> str:
    return "-" if stats is None else f"{stats['mean']:.2f} ± {stats['std']:.2f}"


def seeds_markdown(data: Mapping, bootstrap: Mapping) -> str:
    """Per-seed rows of the comparison, each test set and task followed by its mean ± std over seeds."""
    header = ("test set", "task", "metric", "seed", "reference", "gated", "change", "change 95% CI", "dec skip",
              "speed-up")  # fmt: skip
    table = []
    for row in data["rows"]:
        for r in row["per_seed"]:
            speed_up = "-" if r["speed_up"] is None else f"{r['speed_up']:.2f}x"
            table.append(
                (_row_label(r), r["task"], r["metric"].upper(), r["seed"], f"{r['reference']:.2f}",
                 f"{r['gated']:.2f}", change_text(r["change"]), ci_text(r["ci95"]), fmt(r["dec_skip"], 2), speed_up)
            )  # fmt: skip
        change = row["change"]
        table.append(
            (_row_label(row["per_seed"][0]), row["task"], row["metric"].upper(), "**mean ± std**",
             _spread(row["reference"]), _spread(row["gated"]),
             f"**{change['mean']:+.2f} ± {change['std']:.2f}**", "", _spread(row["dec_skip"]),
             _spread(row["speed_up"]) + ("x" if row["speed_up"] else ""))
        )  # fmt: skip
    n = len(data["seeds"])
    return (
        f"## Over {n} seeds: the gated model against the reference without pruning\n\n"
        f"Seeds {', '.join(map(str, data['seeds']))} (ESPnet's `--seed`): each trains its own pretraining, gated "
        "model and reference, decoded and scored as below (results of each seed: "
        + ", ".join(f"`{d}`" for d in data["results_dirs"])
        + f"). mean ± std: over the {n} seeds (standard deviation with n - 1). Per seed, "
        f"{bootstrap_note(bootstrap)}\n\n" + markdown_table(header, table)
    )


def seed_comparisons(
    seed_runs: Sequence[Tuple[str, PathLike]], out: PathLike, this_run: Mapping
) -> List[Tuple[str, PathLike, Mapping]]:
    """(seed, results dir, comparison) of every seed: ``out``'s from ``this_run`` (being written), the
    others' from their summary.json."""
    seeds = [seed for seed, _ in seed_runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed_runs: a seed is named twice: {seeds}")
    mine = [seed for seed, d in seed_runs if Path(d).resolve() == Path(out).resolve()]
    if len(mine) != 1:
        raise ValueError(f"seed_runs: this results directory ({out}) must be one of the seeds' (given: {seeds})")
    runs = []
    for seed, results_dir in seed_runs:
        if seed == mine[0]:
            runs.append((seed, results_dir, this_run))
            continue
        data = read_results(results_dir)[1].get("comparison")
        if data is None:
            raise ValueError(
                f"{Path(results_dir) / 'summary.json'}: seed {seed} has no comparison with its reference: score it "
                "with its reference first"
            )
        runs.append((seed, results_dir, data))
    return runs
