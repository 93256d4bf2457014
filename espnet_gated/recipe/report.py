"""The recipe's scoring stage: one decode's results directory, and the sparsity-sweep report.

:func:`make_results` writes, under ``out``:

* ``scores.json``: rows with exactly :data:`~espnet_gated.recipe.scoring.SCORE_KEYS` (other tools read it);
* ``bleu_signatures.json``: sacrebleu signatures by test set (and pooled average);
* ``details/<test_set>.txt``: per utterance reference, hypothesis, errors (jiwer alignment) or chrF;
* ``usage.tsv`` and ``usage_<lang>_<task>.png``: keep rate of every module per language and task;
* ``summary.json``: sparsity, FLOPs relative to the dense model and decode time per utterance, overall and
  per test set (for the sweep and for the comparison below);
* ``utterance_stats.json``: per test set, the per-utterance statistics of its main metric (jiwer's error
  and reference word counts, sacrebleu's BLEU statistics), which a paired bootstrap against another
  decode of the same sets resamples;
* ``RESULTS.md``: all of it as tables. With a ``reference`` (the results directory of the model without
  pruning, decoded in the same jobs), it opens with the comparison in the form of the paper's Table 1:
  per test set and task the quality of both, the change with its paired bootstrap 95% interval, the
  executed MACs, the decode times and the speed-up, and whether the measured sparsity met the training
  config's targets (within :data:`TARGET_TOLERANCE`); summary.json holds it as ``comparison``. With the
  results of other seeds, it opens with every seed's rows and their mean and standard deviation
  (summary.json's ``seeds``).

Everything is computed before anything is written and every file is replaced atomically,
``scores.json`` last, so an error leaves the previous results as they were.
:func:`make_sweep` compares several results directories (quality against speed).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from espnet_gated.method.layout import MODULES
from espnet_gated.recipe.scoring import (
    BOOTSTRAP_SAMPLES,
    LOWER_IS_BETTER,
    SCORE_KEYS,
    ScoreReport,
    TestSet,
    bootstrap_seed,
    check_keys,
    interval,
    load_normalizers,
    mean_of_sets,
    paired_bootstrap,
    read_hypotheses,
    read_test_set,
    score_sets,
)
from espnet_gated.recipe.usage import (
    ComputeCost,
    Mask,
    count_decoder_steps,
    keep_rate_rows,
    plot_usage,
    read_gates,
    sparsity,
    usage_grid,
    write_usage_tsv,
)
from espnet_gated.utils import PathLike, atomic_output, atomic_write, read_kaldi_map

TIMING_KEYS = ("n_utts", "wall_s", "encoder_s", "decoder_s")
#: how far the measured inference sparsity may be from the training config's target
TARGET_TOLERANCE = 0.03
#: the paper's headline (Someki et al., ICLR 2025: OWSM v3.1 medium on Europarl-ST), quoted next to ours
PAPER_HEADLINE = (
    "The paper (OWSM v3.1 medium fine-tuned on Europarl-ST, 50% decoder sparsity): decode time -28.6% for ASR "
    "with WER +2.8, -34.3% for ST with no BLEU loss."
)
SWEEP_METRICS = ("wer", "cer", "bleu")  # the quality columns of sweep.md (chrF stays in sweep.json)
SWEEP_SUMMARY_KEYS = ("enc_sparsity", "dec_sparsity", "relative_flops", "decode_s_per_utt")
#: per-utterance statistics of each set's main metric, for the paired bootstrap against another decode
UTTERANCE_STATS = "utterance_stats.json"
BOOTSTRAP_METHOD = "paired bootstrap over utterances (sacrebleu.significance resampling)"
#: the comparison's values averaged over seeds
SEED_KEYS = ("reference", "gated", "change", "enc_skip", "dec_skip", "relative_macs", "speed_up")
Group = Tuple[str, str]  # (lang, task)
ALL: Group = ("all", "all")
COMPUTE_HEADER = (
    *("lang", "task", "utts", "enc frames", "dec steps", "GMACs", "dense GMACs"),
    *("rel. enc", "rel. dec", "rel. total"),
)


@dataclass
class DecodedSet:
    """A reference test set with what the decoder wrote for it."""

    ref: TestSet
    hyps: Dict[str, str]
    masks: Dict[str, Mask]  # only the utterances with a gates line
    steps: Dict[str, int]  # decoder steps per utterance (only when FLOPs are computed)
    timing: Optional[Dict[str, float]]
    best_dir: Path  # <decode_dir>/<set>/1best_recog, for messages


def read_timing(path: Path) -> Optional[Dict[str, float]]:
    if not path.is_file():
        return None
    try:
        timing = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in TIMING_KEYS if k not in timing]
    if missing:
        raise ValueError(f"{path}: missing {missing}; expected keys {list(TIMING_KEYS)}")
    return {k: timing[k] for k in TIMING_KEYS}


def read_decoded_set(ref_root: PathLike, decode_dir: PathLike, name: str, need_steps: bool) -> DecodedSet:
    """Read and cross-check one set; missing hypotheses, gates or tokens of some utterances are
    warned about (empty hypothesis, dense compute, one decoder step), foreign utterances are errors."""
    ref = read_test_set(ref_root, name)
    best = Path(decode_dir) / name / "1best_recog"
    hyps = read_hypotheses(best / "text_nospecial", ref.refs)
    masks: Dict[str, Mask] = {}
    gates_path = best / "gates"
    if gates_path.is_file():
        masks = read_gates(gates_path)
        check_keys(gates_path, masks, ref.refs, "gate mask (computed as dense)")
    else:
        logging.warning(f"{gates_path}: not found; no module usage for '{name}', its compute counted as dense")
    steps: Dict[str, int] = {}
    if need_steps:
        token_path = best / "token"
        if not token_path.is_file():
            raise FileNotFoundError(f"{token_path}: not found; the decoder FLOPs need the hypothesis lengths")
        if not ref.num_samples:
            raise FileNotFoundError(f"{Path(ref_root) / name / 'utt2num_samples'}: not found; the FLOPs need it")
        tokens = read_kaldi_map(token_path)
        check_keys(token_path, tokens, ref.refs, "tokens (one decoder step assumed)")
        steps = {utt: count_decoder_steps(tokens.get(utt, "")) for utt in ref.refs}
    return DecodedSet(ref, hyps, masks, steps, read_timing(Path(decode_dir) / name / "timing.json"), best)


def _groups(sets: Sequence[DecodedSet]) -> Dict[Group, List[DecodedSet]]:
    groups: Dict[Group, List[DecodedSet]] = {}
    for s in sets:
        groups.setdefault((s.ref.lang, s.ref.task), []).append(s)
    return groups


def set_macs(s: DecodedSet, cost: ComputeCost, beam_size: int) -> Dict[str, float]:
    """Summed MACs (executed and dense), frames, steps and utterances of one decoded set."""
    totals: Dict[str, float] = {}
    gates_path = s.best_dir / "gates"
    for utt, n_samples in s.ref.num_samples.items():
        mask = s.masks.get(utt)
        if mask is not None:
            cost.check(mask, f"{gates_path}: utterance '{utt}'")
        macs = cost.utterance_macs(n_samples, s.steps[utt], mask, beam_size)
        macs.update(n_utts=1, frames=cost.encoder_frames(n_samples), steps=s.steps[utt])
        for key, value in macs.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


def compute_stats(per_set: Mapping[str, Dict[str, float]], sets: Sequence[DecodedSet]) -> Dict[Group, Dict[str, float]]:
    """The sets' MACs (:func:`set_macs`) summed per (lang, task), plus the :data:`ALL` total."""
    totals: Dict[Group, Dict[str, float]] = {}
    for s in sets:
        for group in ((s.ref.lang, s.ref.task), ALL):
            acc = totals.setdefault(group, dict.fromkeys(per_set[s.ref.name], 0.0))
            for key, value in per_set[s.ref.name].items():
                acc[key] += value
    return totals


def _relative(stats: Mapping[str, float]) -> Dict[str, float]:
    return {
        "enc": stats["enc"] / stats["enc_dense"],
        "dec": stats["dec"] / stats["dec_dense"],
        "total": (stats["enc"] + stats["dec"]) / (stats["enc_dense"] + stats["dec_dense"]),
    }


def _per_utt_timing(sets: Sequence[DecodedSet]) -> Optional[Dict[str, float]]:
    """Seconds per utterance over all sets; None unless every set has a timing (runs must be comparable)."""
    if not sets or any(s.timing is None for s in sets):
        return None
    n = sum(s.timing["n_utts"] for s in sets)
    if n == 0:
        return None
    return {k: sum(s.timing[k] for s in sets) / n for k in ("wall_s", "encoder_s", "decoder_s")}


def _set_summary(s: DecodedSet, macs: Optional[Dict[str, float]]) -> Dict[str, object]:
    masks = list(s.masks.values())
    timing = _per_utt_timing([s])
    return {
        "lang": s.ref.lang,
        "task": s.ref.task,
        "n_utts": len(s.ref.refs),
        "enc_sparsity": sparsity(masks, "enc"),
        "dec_sparsity": sparsity(masks, "dec"),
        "distinct_masks": len({json.dumps(m, sort_keys=True) for m in masks}),
        "relative_flops": _relative(macs)["total"] if macs else None,
        "macs": macs and macs["enc"] + macs["dec"],
        "dense_macs": macs and macs["enc_dense"] + macs["dec_dense"],
        "decode_s_per_utt": timing and timing["wall_s"],
    }


def summarize(
    sets: Sequence[DecodedSet],
    compute: Optional[Dict[Group, Dict[str, float]]],
    per_set_macs: Mapping[str, Dict[str, float]],
    cost: Optional[ComputeCost],
    beam_size: int,
) -> Dict[str, object]:
    """The machine-readable summary.json that the sweep report and the comparison read."""
    masks = [m for s in sets for m in s.masks.values()]
    timing = _per_utt_timing(sets)
    relative = _relative(compute[ALL]) if compute else None
    summary = {
        "test_sets": [s.ref.name for s in sets],
        "n_utts": sum(len(s.ref.refs) for s in sets),
        "n_utts_with_gates": len(masks),
        "beam_size": beam_size,
        "enc_sparsity": sparsity(masks, "enc"),
        "dec_sparsity": sparsity(masks, "dec"),
        "relative_flops": relative and relative["total"],
        "relative_enc_flops": relative and relative["enc"],
        "relative_dec_flops": relative and relative["dec"],
        "decode_s_per_utt": timing and timing["wall_s"],
        "encoder_s_per_utt": timing and timing["encoder_s"],
        "decoder_s_per_utt": timing and timing["decoder_s"],
        "per_set": {s.ref.name: _set_summary(s, per_set_macs.get(s.ref.name)) for s in sets},
    }
    if cost is not None and masks:
        summary["targets"] = {side: cost.targets[side] for side in ("enc", "dec")}
        summary["gated_sparsity"] = {side: cost.gated_sparsity(masks, side) for side in ("enc", "dec")}
        by_task: Dict[str, List] = {}
        for s in sets:
            by_task.setdefault(s.ref.task, []).extend(s.masks.values())
        summary["gated_sparsity_per_task"] = {
            task: {side: cost.gated_sparsity(task_masks, side) for side in ("enc", "dec")}
            for task, task_masks in by_task.items()
        }
    return summary


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


def read_results(results_dir: PathLike) -> Tuple[List[Dict], Dict]:
    """(scores.json rows, summary.json) of a results directory written by :func:`make_results`."""
    results_dir = Path(results_dir)
    loaded = []
    for name in ("scores.json", "summary.json"):
        path = results_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; score that decode first")
        try:
            loaded.append(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "per_set" not in loaded[1]:
        raise ValueError(f"{results_dir / 'summary.json'}: no per_set entry (written by an older version: score again)")
    return loaded[0], loaded[1]


def _main_metric(rows: Sequence[Mapping], test_set: str, task: str) -> Optional[Tuple[str, float]]:
    values = {r["metric"]: r["value"] for r in rows if r["test_set"] == test_set and r["task"] == task}
    for metric in SWEEP_METRICS:
        if metric in values:
            return metric, values[metric]
    return None


def read_utterance_stats(results_dir: PathLike) -> Dict[str, Dict]:
    """``utterance_stats.json`` of a results directory: the bootstrap's per-utterance statistics."""
    path = Path(results_dir) / UTTERANCE_STATS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (written by an older version?): score that decode again")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


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
        ours, ref = _main_metric(rows, name, mine["task"]), _main_metric(ref_rows, name, mine["task"])
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


def _change(value: float) -> str:
    return f"{value:+.2f}"


def _ci(bounds: Sequence[float]) -> str:
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
            _change(row["change"]) + (" (lower is better)" if row["metric"] in LOWER_IS_BETTER else ""),
            _ci(row["ci95"]),
            _fmt(row["enc_skip"], 2),
            _fmt(row["dec_skip"], 2),
            _fmt(row["relative_macs"], 2),
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
        + _table(header, table)
        + f"\n{PAPER_HEADLINE}\n"
    )


# ---------------------------------------------------------------- several seeds


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
                 f"{r['gated']:.2f}", _change(r["change"]), _ci(r["ci95"]), _fmt(r["dec_skip"], 2), speed_up)
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
        f"{bootstrap_note(bootstrap)}\n\n" + _table(header, table)
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _compute_row(group: Group, stats: Mapping[str, float]) -> List[object]:
    n, rel = stats["n_utts"], _relative(stats)
    lengths = (stats["frames"] / n, stats["steps"] / n)
    gmacs = ((stats["enc"] + stats["dec"]) / n / 1e9, (stats["enc_dense"] + stats["dec_dense"]) / n / 1e9)
    return [*group, int(n), *(f"{v:.1f}" for v in lengths), *(f"{v:.4g}" for v in gmacs), *map(_fmt, rel.values())]


def usage_image_name(lang: str, task: str) -> str:
    return f"usage_{lang}_{task}.png"


def results_markdown(
    sets: Sequence[DecodedSet],
    scores: ScoreReport,
    usage: Mapping[Group, List[Dict]],
    compute: Optional[Dict[Group, Dict[str, float]]],
    summary: Mapping[str, object],
    header: str,
    comparison: str = "",
) -> str:
    parts = [f"# Results\n\n{header}\n"]
    if comparison:
        parts.append(comparison)
    parts.append("## Scores\n")
    parts.append(
        "Percentages. WER/CER after lower-casing, removing punctuation and collapsing spaces on both sides; "
        "BLEU and chrF (sacrebleu) on cased, detokenized text. "
        "micro_avg pools the utterances of a task's sets, macro_avg is the mean over the sets.\n"
    )
    rows = [(r["test_set"], r["lang"], r["task"], r["metric"], f"{r['value']:.2f}", r["n_utts"]) for r in scores.rows]
    parts.append(_table(("test set", "lang", "task", "metric", "value", "utts"), rows))
    if scores.signatures:
        parts.append("sacrebleu signatures:\n")
        for label, by_metric in scores.signatures.items():
            parts += [f"- {label} {metric}: `{sig}`" for metric, sig in by_metric.items()]
        parts.append("")

    parts.append("## Module usage\n")
    parts.append(
        f"Keep rate of each module (1 = executed for every utterance). Skipped modules overall: "
        f"encoder {_fmt(summary['enc_sparsity'])}, decoder {_fmt(summary['dec_sparsity'])} "
        f"({summary['n_utts_with_gates']} of {summary['n_utts']} utterances have gates).\n"
    )
    distinct = {}
    for s in sets:
        group = distinct.setdefault((s.ref.lang, s.ref.task), [])
        group.extend(json.dumps(m, sort_keys=True) for m in s.masks.values())
    for (lang, task), rows in usage.items():
        masks = distinct.get((lang, task), [])
        top = max(masks.count(m) for m in set(masks)) if masks else 0
        parts.append(
            f"### {lang} {task} ({rows[0]['n_utts']} utts, {len(set(masks))} distinct masks; "
            f"the most frequent one: {top} utts)\n"
        )
        parts.append(f"![{lang} {task} module usage]({usage_image_name(lang, task)})\n")
        for side, title in (("enc", "Encoder"), ("dec", "Decoder")):
            grid = usage_grid(rows, side)
            table_rows = [(layer, *(f"{v:.2f}" for v in values)) for layer, values in enumerate(grid)]
            parts.append(f"{title}:\n\n" + _table(("layer", *MODULES[side]), table_rows))

    if compute:
        parts.append(
            f"## Compute\n\nAnalytic MACs per utterance (flops.py), beam {summary['beam_size']}: executed "
            "modules against the same model with all modules open.\n"
        )
        ordered = [g for g in compute if g != ALL] + [ALL]  # the overall row last
        parts.append(_table(COMPUTE_HEADER, [_compute_row(g, compute[g]) for g in ordered]))

    timed = [s for s in sets if s.timing is not None]
    if timed:
        parts.append("## Decode time\n\nSeconds per utterance (timing.json of the decode).\n")
        rows = []
        for s in timed:
            n = max(s.timing["n_utts"], 1)
            rows.append((s.ref.name, s.timing["n_utts"], *(_fmt(s.timing[k] / n, 4) for k in TIMING_KEYS[1:])))
        parts.append(_table(("test set", "utts", "wall s/utt", "encoder s/utt", "decoder s/utt"), rows))
    return "\n".join(parts)


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


def make_results(
    ref_root: PathLike,
    decode_dir: PathLike,
    test_sets: Sequence[str],
    out: PathLike,
    config: Optional[PathLike] = None,
    beam_size: int = 1,
    normalizers: Optional[PathLike] = None,
    reference: Optional[PathLike] = None,
    reference_label: str = "",
    seed_runs: Sequence[Tuple[str, PathLike]] = (),
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
) -> Dict[str, object]:
    """Score ``test_sets`` and write the results directory ``out``; returns summary.json's content.

    ``config`` (the training config.yaml) enables the FLOPs columns and the check of the sparsity
    targets; ``normalizers`` is a corpus YAML whose ``languages`` entries may set ``normalizer:
    basic|cer``; ``reference`` is the results directory of the model without pruning (decoded in the
    same jobs), described by ``reference_label``, for the comparison that opens RESULTS.md, with
    ``bootstrap_samples`` paired bootstrap resamples. ``seed_runs`` ((seed, results dir), ``out``
    among them) are the same recipe trained with other seeds, each already compared with its own
    reference: RESULTS.md then opens with every seed's rows and the mean and spread over seeds.
    """
    if not test_sets:
        raise ValueError("no test sets to score")
    cost = ComputeCost(config) if config else None
    norms = load_normalizers(normalizers) if normalizers else {}
    sets = [read_decoded_set(ref_root, decode_dir, name, need_steps=cost is not None) for name in test_sets]
    scores = score_sets([s.ref for s in sets], {s.ref.name: s.hyps for s in sets}, norms)
    usage = {
        group: keep_rate_rows(*group, [m for s in members for m in s.masks.values()])
        for group, members in _groups(sets).items()
        if any(s.masks for s in members)
    }
    per_set_macs = {s.ref.name: set_macs(s, cost, beam_size) for s in sets} if cost else {}
    compute = compute_stats(per_set_macs, sets) if cost else None
    summary = summarize(sets, compute, per_set_macs, cost, beam_size)
    header = (
        f"Decode: `{decode_dir}`; references: `{ref_root}`; model config: `{config or '-'}`; beam size {beam_size}."
    )
    comparison_md = ""
    if reference is not None:
        label = reference_label or str(reference)
        summary["comparison"] = comparison(
            scores.rows, summary, scores.utterance_stats, reference, label, bootstrap_samples
        )
        this_seed = ""
        if seed_runs:
            summary["seeds"] = across_seeds(seed_comparisons(seed_runs, out, summary["comparison"]))
            this_seed = next(seed for seed, d in seed_runs if Path(d).resolve() == Path(out).resolve())
            comparison_md = seeds_markdown(summary["seeds"], summary["comparison"]["bootstrap"]) + "\n"
        comparison_md += comparison_markdown(summary["comparison"], summary, this_seed)
    elif seed_runs:
        raise ValueError("seed_runs: the spread over seeds compares each seed with its reference: give the reference")
    markdown = results_markdown(sets, scores, usage, compute, summary, header, comparison_md)
    for miss in target_report(summary)[1]:
        logging.warning(f"{out}: {miss}: the sparsity knob did not do what it says (see the controller's log)")

    out = Path(out)
    for name, text in scores.details.items():
        atomic_write(out / "details" / f"{name}.txt", text)
    write_usage_tsv(out / "usage.tsv", [row for rows in usage.values() for row in rows])
    for (lang, task), rows in usage.items():
        plot_usage(rows, out / usage_image_name(lang, task), f"module keep rate: {lang} {task}")
    atomic_write(out / UTTERANCE_STATS, json.dumps(scores.utterance_stats, ensure_ascii=False) + "\n")
    atomic_write(out / "bleu_signatures.json", json.dumps(scores.signatures, indent=2, ensure_ascii=False) + "\n")
    atomic_write(out / "RESULTS.md", markdown)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "scores.json", json.dumps(scores.rows, indent=2, ensure_ascii=False) + "\n")
    return summary


# ---------------------------------------------------------------- sweep


def read_run(name: str, results_dir: PathLike) -> Dict[str, object]:
    """One sweep point from a results directory's scores.json and summary.json."""
    results_dir = Path(results_dir)
    loaded = {}
    for file in ("scores.json", "summary.json"):
        path = results_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run {name}); score the run first")
        loaded[file] = json.loads(path.read_text(encoding="utf-8"))
    summary = loaded["summary.json"]
    missing = [k for k in SWEEP_SUMMARY_KEYS if k not in summary]
    if missing:
        raise ValueError(f"{results_dir / 'summary.json'}: missing {missing} (run {name})")
    scores, averages = {}, {}
    for row in loaded["scores.json"]:
        if set(row) != set(SCORE_KEYS):
            raise ValueError(f"{results_dir / 'scores.json'}: row {row} lacks the keys {list(SCORE_KEYS)} (run {name})")
        if row["test_set"] == "macro_avg":
            averages[f"{row['task']}/{row['metric']}"] = row["value"]
        elif row["test_set"] != "micro_avg":
            scores[f"{row['test_set']}/{row['metric']}"] = row["value"]
    return {
        "run": name,
        "results_dir": str(results_dir),
        **{key: summary[key] for key in SWEEP_SUMMARY_KEYS},
        "scores": scores,
        "averages": averages,
    }


def _quality_columns(runs: Sequence[Mapping]) -> List[Tuple[str, str, str]]:
    """(label, section, key) of every WER/CER/BLEU column: per set, then the task averages."""
    columns = []
    for metric in SWEEP_METRICS:
        for section, suffix in (("scores", ""), ("averages", " avg")):
            keys = dict.fromkeys(k for r in runs for k in r[section] if k.endswith(f"/{metric}"))
            columns += [(f"{metric.upper()} {k.rsplit('/', 1)[0]}{suffix}", section, k) for k in keys]
    return columns


def plot_sweep(runs: Sequence[Mapping], path: PathLike) -> None:
    """Task-average quality against relative decode time and relative FLOPs, one series per task and metric."""
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    curves = dict.fromkeys(k for r in runs for k in r["averages"] if k.rsplit("/", 1)[1] in SWEEP_METRICS)
    for ax, x_key, x_label in (
        (axes[0], "relative_decode_time", "decode time per utterance, relative to the first run"),
        (axes[1], "relative_flops", "executed FLOPs relative to the dense model"),
    ):
        for curve in curves:
            task, metric = curve.rsplit("/", 1)
            points = [
                (r[x_key], r["averages"][curve], r["run"])
                for r in runs
                if r[x_key] is not None and curve in r["averages"]
            ]
            if not points:
                continue
            arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
            # points, not a curve: the runs differ in side as well as target
            ax.plot([p[0] for p in points], [p[1] for p in points], "o", label=f"{task} {metric.upper()} ({arrow})")
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlabel(x_label)
        ax.set_ylabel("score (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def make_sweep(runs: Sequence[Tuple[str, PathLike]], out: PathLike) -> List[Dict[str, object]]:
    """Write ``sweep.md``, ``sweep.json`` and ``sweep.png`` comparing ``runs`` ((name, results dir), the
    first is the reference for relative decode time); returns sweep.json's runs."""
    if not runs:
        raise ValueError("no runs to compare")
    points = [read_run(name, results_dir) for name, results_dir in runs]
    reference_time = points[0]["decode_s_per_utt"]
    for p in points:
        has_time = reference_time and p["decode_s_per_utt"] is not None
        p["relative_decode_time"] = p["decode_s_per_utt"] / reference_time if has_time else None
    columns = _quality_columns(points)
    rows = [
        (
            p["run"],
            _fmt(p["enc_sparsity"]),
            _fmt(p["dec_sparsity"]),
            *(_fmt(p[section].get(key), 2) for _, section, key in columns),
            _fmt(p["relative_flops"]),
            _fmt(p["relative_decode_time"]),
        )
        for p in points
    ]
    header = ("run", "enc sparsity", "dec sparsity", *(c[0] for c in columns), "rel. FLOPs", "rel. decode time")
    markdown = (
        "# Sparsity sweep\n\n"
        "Measured sparsity = fraction of modules skipped at inference. Scores in % (avg = mean over the task's "
        f"sets). rel. FLOPs: executed MACs against the dense model; rel. decode time: against run "
        f"`{points[0]['run']}`.\n\n" + _table(header, rows) + "\n![quality vs speed](sweep.png)\n"
    )
    out = Path(out)
    plot_sweep(points, out / "sweep.png")
    atomic_write(out / "sweep.json", json.dumps({"reference_run": points[0]["run"], "runs": points}, indent=2) + "\n")
    atomic_write(out / "sweep.md", markdown)
    return points
