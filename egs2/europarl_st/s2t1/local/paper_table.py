#!/usr/bin/env python3
"""Our sparsity sweeps next to the published numbers (run by run.sh after stage 17).

Reads ``<exp>_sweep_<side>/sweep.json`` (espnet_gated.bin.sweep_report) for every side, each run's
``results/scores.json`` and its decode's per-set ``timing.json``, and ``conf/paper_results.yaml``.
Writes one table per task: quality and decode time per utterance of every run, their change against
the dense reference (``all_open``: the stage-11 model with every module kept) and, where the paper
gives the same point, the published change. Module usage per language and task: each run's
``results/RESULTS.md``.

Usage:
    python local/paper_table.py --exp exp/owsm_v3.1_medium_gated --sides "enc dec both" \
        --paper conf/paper_results.yaml --out exp/owsm_v3.1_medium_gated_paper.md
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml


def task_timing(results_dir: Path) -> dict:
    """task -> decode seconds per utterance, from the timing.json of the task's test sets."""
    rows = json.loads((results_dir / "scores.json").read_text(encoding="utf-8"))
    sets = {r["test_set"]: r["task"] for r in rows if r["test_set"] not in ("micro_avg", "macro_avg")}
    totals = {}
    for name, task in sets.items():
        path = results_dir.parent / "decode" / name / "timing.json"
        if path.is_file():
            timing = json.loads(path.read_text(encoding="utf-8"))
            wall, n = totals.get(task, (0.0, 0))
            totals[task] = (wall + timing["wall_s"], n + timing["n_utts"])
    return {task: wall / n for task, (wall, n) in totals.items() if n}


def metric_of(averages: dict, task: str):
    for metric in ("wer", "cer", "bleu"):
        if f"{task}/{metric}" in averages:
            return metric, averages[f"{task}/{metric}"]
    return None, None


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(cmd=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="the stage-11 experiment dir (exp/<tag>)")
    parser.add_argument("--sides", default="enc dec both")
    parser.add_argument("--paper", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    paper = yaml.safe_load(args.paper.read_text(encoding="utf-8"))
    published = {(p["side"], float(p["target"]), p["task"]): p for p in paper.get("points", [])}

    rows = {}  # task -> table rows
    for side in args.sides.split():
        sweep = Path(f"{args.exp}_sweep_{side}") / "sweep.json"
        if not sweep.is_file():
            print(f"{sweep}: not found (sweep side '{side}' not run yet); skipped", file=sys.stderr)
            continue
        runs = json.loads(sweep.read_text(encoding="utf-8"))["runs"]
        timing = {r["run"]: task_timing(Path(r["results_dir"])) for r in runs}
        reference = runs[0]
        for run in runs:
            match = re.fullmatch(rf"{side}([0-9.]+)", run["run"])
            target = float(match[1]) if match else None
            for task in dict.fromkeys(key.split("/")[0] for key in run["averages"]):
                metric, value = metric_of(run["averages"], task)
                if metric is None:
                    continue
                _, ref_value = metric_of(reference["averages"], task)
                time, ref_time = timing[run["run"]].get(task), timing[reference["run"]].get(task)
                d_time = time / ref_time - 1 if time is not None and ref_time else None
                pub = published.get((side, target, task), {}) if target is not None else {}
                rows.setdefault(task, []).append(
                    (
                        side,
                        "dense (all open)" if run is reference else fmt(target, ".0%"),
                        fmt(run["enc_sparsity"], ".2f"),
                        fmt(run["dec_sparsity"], ".2f"),
                        f"{metric.upper()} {value:.2f}",
                        fmt(value - ref_value if ref_value is not None else None, "+.2f"),
                        fmt(time, ".3f"),
                        fmt(d_time, "+.1%"),
                        fmt(pub.get("metric_change"), "+.1f"),
                        fmt(pub.get("decode_time_change"), "+.1%"),
                        f"[RESULTS]({Path(run['results_dir']).resolve() / 'RESULTS.md'})",
                    )
                )
    header = (
        "sweep",
        "target",
        "enc sparsity",
        "dec sparsity",
        "ours",
        "Δ vs dense",
        "s/utt",
        "Δ time",
        "paper Δ",
        "paper Δ time",
        "module usage",
    )
    parts = [
        "# Europarl-ST sweep next to the published numbers\n",
        f"Paper: {paper.get('source')}, {paper.get('model')}. Ours: `{args.exp}`. Δ: change against the dense "
        "fine-tuned model decoded with every module kept (metric points; relative decode time per utterance). "
        f"Sparsity: measured fraction of modules skipped at inference. Abstract: {paper.get('abstract')}.\n",
    ]
    for task, table in rows.items():
        parts.append(f"## {task}\n")
        parts.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        parts += ["| " + " | ".join(row) + " |" for row in table]
        parts.append("")
    if not rows:
        parts.append("No sweep results yet: run stage 17.\n")
    parts.append("Published qualitative findings (compare with the module-usage tables):\n")
    parts += [f"- {finding}" for finding in paper.get("findings", [])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"{args.out}: {sum(len(t) for t in rows.values())} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
