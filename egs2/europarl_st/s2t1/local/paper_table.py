#!/usr/bin/env python3
"""Our sparsity sweep next to the published numbers (run by run.sh after stage 17).

Reads ``<sweep>/sweep.json`` (espnet_gated.bin.sweep_report over every run of stage 17: the dense
reference, named ``reference``, one run per side and target, named like ``dec0.5``, and each side's
budget model decoded at each budget, named like ``dec_budget@0.5``), each run's ``results/scores.json``
and the per-set ``timing.json`` of its ``decode/`` (``<sweep>/dec0.5/``, ``<sweep>/dec_budget/at0.5/``),
and ``conf/paper_results.yaml``. Writes one table per task: quality and decode time per utterance of the
reference and of every run, the runs' change against the reference (the same fine-tuning without gates,
decoded in the same jobs) and, where the paper gives the same side and sparsity, the published change.
Module usage per language and task: each run's ``results/RESULTS.md``.

Usage:
    python local/paper_table.py --sweep exp/owsm_v3.1_medium_gated_sweep \
        --paper conf/paper_results.yaml --out exp/owsm_v3.1_medium_gated_paper.md
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from espnet_gated.cli import entry_point, existing_dir, existing_file
from espnet_gated.utils import atomic_write

REFERENCE = "reference"  # the run name of the dense reference in stage 17's sweep.json
# <side><target> (a fixed-target run) or <side>_budget@<budget> (the budget model), as stage 17 names its runs
RUN_NAME = re.compile(r"(?P<side>enc|dec|both)(?:(?P<target>[0-9.]+)|_budget@(?P<budget>[0-9.]+))")
METRICS = ("wer", "cer", "bleu")  # the quality measure of a task: the first of these it has
HEADER = (
    *("run", "target", "enc sparsity", "dec sparsity", "ours", "Δ vs reference", "s/utt", "Δ time"),
    *("paper Δ", "paper Δ time", "module usage"),
)


def task_timing(run_dir: Path) -> dict:
    """task -> decode seconds per utterance of one run, from the timing.json of the task's test sets."""
    rows = json.loads((run_dir / "results" / "scores.json").read_text(encoding="utf-8"))
    sets = {r["test_set"]: r["task"] for r in rows if r["test_set"] not in ("micro_avg", "macro_avg")}
    totals = {}
    for name, task in sets.items():
        path = run_dir / "decode" / name / "timing.json"
        if path.is_file():
            timing = json.loads(path.read_text(encoding="utf-8"))
            wall, n = totals.get(task, (0.0, 0))
            totals[task] = (wall + timing["wall_s"], n + timing["n_utts"])
    return {task: wall / n for task, (wall, n) in totals.items() if n}


def metric_of(averages: dict, task: str):
    for metric in METRICS:
        if f"{task}/{metric}" in averages:
            return metric, averages[f"{task}/{metric}"]
    return None, None


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run_dir(sweep_dir: Path, name: str) -> Path:
    """Where stage 17 decodes and scores a run: ``<sweep>/dec0.5``, ``<sweep>/dec_budget/at0.5``."""
    model, _, budget = name.partition("@")
    return sweep_dir / model / f"at{budget}" if budget else sweep_dir / name


def read_sweep(sweep_dir: Path):
    """(reference run, [(side, target, budget model?, run)]) of ``sweep_dir/sweep.json``; ValueError naming
    the file for a sweep without the reference or with a run name that stage 17 does not give."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run stage 17 first")
    report = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(report, dict) or not isinstance(report.get("runs"), list):
        raise ValueError(f"{path}: not a sweep report of espnet_gated.bin.sweep_report (no list of runs)")
    runs = report["runs"]
    by_name = {run["run"]: run for run in runs}
    if REFERENCE not in by_name:
        raise ValueError(f"{path}: no run named '{REFERENCE}' (the dense reference); runs: {sorted(by_name)}")
    points = []
    for run in runs:
        if run["run"] == REFERENCE:
            continue
        match = RUN_NAME.fullmatch(run["run"])
        if not match:
            raise ValueError(
                f"{path}: run '{run['run']}' is neither '{REFERENCE}' nor <enc|dec|both><target> nor "
                "<enc|dec|both>_budget@<budget>"
            )
        budget = match["budget"] is not None
        points.append((match["side"], float(match["budget"] if budget else match["target"]), budget, run))
    return by_name[REFERENCE], points


def tables(sweep_dir: Path, paper: dict) -> dict:
    """task -> table rows: the reference, then every run in sweep.json's order."""
    reference, points = read_sweep(sweep_dir)
    published = {(p["side"], float(p["target"]), p["task"]): p for p in paper.get("points", [])}
    runs = [(REFERENCE, None, False, reference), *points]
    timing = {run["run"]: task_timing(run_dir(sweep_dir, run["run"])) for *_, run in runs}
    ref_timing = timing[REFERENCE]
    rows = {}
    for side, target, budget, run in runs:
        for task in dict.fromkeys(key.split("/")[0] for key in run["averages"]):
            metric, value = metric_of(run["averages"], task)
            if metric is None:
                continue
            _, ref_value = metric_of(reference["averages"], task)
            time, ref_time = timing[run["run"]].get(task), ref_timing.get(task)
            is_reference = run is reference
            d_value = value - ref_value if ref_value is not None and not is_reference else None
            d_time = time / ref_time - 1 if time is not None and ref_time and not is_reference else None
            pub = published.get((side, target, task), {})
            rows.setdefault(task, []).append(
                (
                    f"{side} budget model" if budget else side,
                    "dense" if is_reference else fmt(target, ".0%"),
                    fmt(run["enc_sparsity"], ".2f"),
                    fmt(run["dec_sparsity"], ".2f"),
                    f"{metric.upper()} {value:.2f}",
                    fmt(d_value, "+.2f"),
                    fmt(time, ".3f"),
                    fmt(d_time, "+.1%"),
                    fmt(pub.get("metric_change"), "+.1f"),
                    fmt(pub.get("decode_time_change"), "+.1%"),
                    f"[RESULTS]({(run_dir(sweep_dir, run['run']) / 'results' / 'RESULTS.md').resolve()})",
                )
            )
    return rows


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=existing_dir, required=True, help="stage 17's directory (exp/<tag>_sweep)")
    parser.add_argument("--paper", type=existing_file, required=True, help="the published numbers (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown table to write")
    args = parser.parse_args(cmd)
    with open(args.paper, encoding="utf-8") as f:  # a syntax error then names the file and line
        paper = yaml.safe_load(f) or {}
    rows = tables(args.sweep, paper)
    parts = [
        "# Europarl-ST sweep next to the published numbers\n",
        f"Paper: {paper.get('source')}, {paper.get('model')}. Ours: `{args.sweep}`. Δ: change against the "
        "reference, the same fine-tuning without gates decoded in the same jobs (metric points; relative decode "
        "time per utterance). Sparsity: measured fraction of modules skipped at inference. Target: the sparsity "
        "a run was trained for or, for a budget model (one training for every budget), the budget it was asked for. "
        f"Abstract: {paper.get('abstract')}.\n",
    ]
    for task, table in rows.items():
        parts.append(f"## {task}\n")
        parts.append("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
        parts += ["| " + " | ".join(row) + " |" for row in table]
        parts.append("")
    parts.append("Published qualitative findings (compare with the module-usage tables):\n")
    parts += [f"- {finding}" for finding in paper.get("findings", [])]
    atomic_write(args.out, "\n".join(parts) + "\n")
    print(f"{args.out}: {sum(len(t) for t in rows.values())} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
