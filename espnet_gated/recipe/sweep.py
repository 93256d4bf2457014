"""The sparsity sweep's report: several results directories side by side, quality against speed
(``sweep.md``, ``sweep.json``, ``sweep.png``)."""

import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

from matplotlib.figure import Figure

from espnet_gated.recipe.comparison import change_text, ci_text
from espnet_gated.recipe.results import QUALITY_METRICS, fmt, markdown_table
from espnet_gated.recipe.scoring import LOWER_IS_BETTER, SCORE_KEYS
from espnet_gated.utils import PathLike, atomic_output, atomic_write

SWEEP_SUMMARY_KEYS = ("enc_sparsity", "dec_sparsity", "relative_flops", "decode_s_per_utt")


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


def read_versus(run: str, against: str, results_dir: PathLike) -> Dict[str, object]:
    """One paired comparison: ``run``'s decode scored with ``--reference`` ``against``'s results (``results_dir``:
    that scoring's output), reduced to each task's average change and its bootstrap 95% interval."""
    path = Path(results_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found ({run} against {against}); score {run} against {against} first")
    summary = json.loads(path.read_text(encoding="utf-8"))
    rows = (summary.get("comparison") or {}).get("rows")
    if not rows:
        raise ValueError(f"{path}: no comparison ({run} against {against}): score it with --reference")
    changes = {
        f"{r['task']}/{r['metric']}": {key: r[key] for key in ("reference", "gated", "change", "ci95")}
        for r in rows
        if r["test_set"] == "macro_avg"
    }
    return {"run": run, "against": against, "results_dir": str(results_dir), "changes": changes}


def versus_markdown(pairs: Sequence[Mapping]) -> str:
    """The paired comparisons as a table: each task's average change from ``against`` to ``run`` with its interval."""
    keys = list(dict.fromkeys(k for p in pairs for k in p["changes"]))
    columns = (f"{metric.upper()} {task} avg: change [95% CI]" for task, metric in (k.rsplit("/", 1) for k in keys))
    header = ("run", "against", *columns)
    rows = [
        (
            p["run"],
            p["against"],
            *(f"{change_text(c['change'])} {ci_text(c['ci95'])}" if (c := p["changes"].get(k)) else "-" for k in keys),
        )
        for p in pairs
    ]
    return (
        "## Paired comparisons\n\nEach task's average score of `run` minus that of `against` (the budget model at a "
        "budget against the model trained for that target), with its paired bootstrap 95% interval over the "
        "utterances (sacrebleu's resampling for BLEU, the same resampling over jiwer's counts for WER).\n\n"
        + markdown_table(header, rows)
    )


def _quality_columns(runs: Sequence[Mapping]) -> List[Tuple[str, str, str]]:
    """(label, section, key) of every WER/CER/BLEU column: per set, then the task averages."""
    columns = []
    for metric in QUALITY_METRICS:
        for section, suffix in (("scores", ""), ("averages", " avg")):
            keys = dict.fromkeys(k for r in runs for k in r[section] if k.endswith(f"/{metric}"))
            columns += [(f"{metric.upper()} {k.rsplit('/', 1)[0]}{suffix}", section, k) for k in keys]
    return columns


def plot_sweep(runs: Sequence[Mapping], path: PathLike) -> None:
    """Task-average quality against relative decode time and relative FLOPs, one row of plots per metric (WER and
    BLEU have their own scales), one series per task: the fixed-target runs as points, each budget model's decodes
    (runs named ``<model>@<budget>``) as a curve."""
    curves = dict.fromkeys(k for r in runs for k in r["averages"] if k.rsplit("/", 1)[1] in QUALITY_METRICS)
    metrics = list(dict.fromkeys(curve.rsplit("/", 1)[1] for curve in curves)) or [QUALITY_METRICS[0]]
    fig = Figure(figsize=(11, 3.8 * len(metrics)))
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    for row, metric in zip(axes, metrics, strict=True):
        for ax, x_key, x_label in (
            (row[0], "relative_decode_time", "decode time per utterance, relative to the first run"),
            (row[1], "relative_flops", "executed FLOPs relative to the dense model"),
        ):
            for curve in (c for c in curves if c.rsplit("/", 1)[1] == metric):
                task = curve.rsplit("/", 1)[0]
                points = [
                    (r[x_key], r["averages"][curve], r["run"])
                    for r in runs
                    if r[x_key] is not None and curve in r["averages"]
                ]
                if not points:
                    continue
                fixed = [p for p in points if "@" not in p[2]]
                # points, not a curve: the fixed-target runs differ in side as well as target
                label = f"{task}: one model per point"
                (marker,) = ax.plot([p[0] for p in fixed], [p[1] for p in fixed], "o", label=label)
                for x, y, name in fixed:
                    ax.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
                for model in dict.fromkeys(p[2].split("@")[0] for p in points if "@" in p[2]):
                    curve_points = sorted((p for p in points if p[2].split("@")[0] == model), key=lambda p: p[0])
                    ax.plot([p[0] for p in curve_points], [p[1] for p in curve_points], ".-", color=marker.get_color(),
                            alpha=0.7, label=f"{task}: {model} (one model, the budget asked)")  # fmt: skip
            ax.set_xlabel(x_label)
            arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
            ax.set_ylabel(f"{metric.upper()} % ({arrow})")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def make_sweep(
    runs: Sequence[Tuple[str, PathLike]], out: PathLike, versus: Sequence[Tuple[str, str, PathLike]] = ()
) -> List[Dict[str, object]]:
    """Write ``sweep.md``, ``sweep.json`` and ``sweep.png`` comparing ``runs`` ((name, results dir), the
    first is the reference for relative decode time) and, for each of ``versus`` ((run, against, results dir
    of run scored against against's results)), the paired change with its interval; returns sweep.json's runs."""
    if not runs:
        raise ValueError("no runs to compare")
    names = {name for name, _ in runs}
    unknown = sorted({name for run, against, _ in versus for name in (run, against)} - names)
    if unknown:
        raise ValueError(f"paired comparison of unknown run(s) {unknown}; the runs are {sorted(names)}")
    points = [read_run(name, results_dir) for name, results_dir in runs]
    pairs = [read_versus(*pair) for pair in versus]
    reference_time = points[0]["decode_s_per_utt"]
    for p in points:
        has_time = reference_time and p["decode_s_per_utt"] is not None
        p["relative_decode_time"] = p["decode_s_per_utt"] / reference_time if has_time else None
    columns = _quality_columns(points)
    rows = [
        (
            p["run"],
            fmt(p["enc_sparsity"]),
            fmt(p["dec_sparsity"]),
            *(fmt(p[section].get(key), 2) for _, section, key in columns),
            fmt(p["relative_flops"]),
            fmt(p["relative_decode_time"]),
        )
        for p in points
    ]
    header = ("run", "enc sparsity", "dec sparsity", *(c[0] for c in columns), "rel. FLOPs", "rel. decode time")
    markdown = (
        "# Sparsity sweep\n\n"
        "Measured sparsity = fraction of modules skipped at inference. Scores in % (avg = mean over the task's "
        f"sets). rel. FLOPs: executed MACs against the dense model; rel. decode time: against run "
        f"`{points[0]['run']}`. `<side>_budget@<b>`: the side's budget-conditioned model (one training) decoded at "
        "budget b; the other runs are one training per target.\n\n"
        + markdown_table(header, rows)
        + "\n![quality vs speed](sweep.png)\n"
        + ("\n" + versus_markdown(pairs) if pairs else "")
    )
    out = Path(out)
    plot_sweep(points, out / "sweep.png")
    report = {"reference_run": points[0]["run"], "runs": points, "versus": pairs}
    atomic_write(out / "sweep.json", json.dumps(report, indent=2) + "\n")
    atomic_write(out / "sweep.md", markdown)
    return points
