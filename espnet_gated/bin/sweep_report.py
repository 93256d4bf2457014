#!/usr/bin/env python3
r"""Sparsity-sweep report: quality against speed over several scored runs.

Each run is ``name=results_dir`` where ``results_dir`` was written by ``espnet_gated.bin.score``
(its ``scores.json`` and ``summary.json`` are read). Writes ``sweep.md`` (measured encoder/decoder
sparsity, WER/CER and BLEU per set and task average, FLOPs relative to the dense model, decode time
relative to the first run), ``sweep.png`` and ``sweep.json`` under ``--out``. Each ``--versus
run=against=results_dir`` (``results_dir``: run's decode scored with ``--reference`` against's results)
adds the paired change of every task's average from ``against`` to ``run`` with its bootstrap 95% interval.

Usage:
    python -m espnet_gated.bin.sweep_report \
        --runs target0.0=exp/a/results target0.3=exp/b/results target0.5=exp/c/results \
        --out exp/sweep
    python -m espnet_gated.bin.sweep_report --runs reference=... dec0.5=... dec_budget@0.5=... \
        --versus dec_budget@0.5=dec0.5=exp/sweep/dec_budget/at0.5/vs_dec0.5 --out exp/sweep
"""

import argparse
import logging
from pathlib import Path

from espnet_gated.cli import entry_point
from espnet_gated.recipe.sweep import make_sweep


def parse_run(text: str):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"'{text}': expected name=results_dir")
    return name, Path(path)


def parse_versus(text: str):
    run, _, rest = text.partition("=")
    against, _, path = rest.partition("=")
    if not (run and against and path):
        raise argparse.ArgumentTypeError(f"'{text}': expected run=against=results_dir")
    return run, against, Path(path)


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=parse_run, nargs="+", required=True, help="name=results_dir, reference first")
    parser.add_argument(
        "--versus", type=parse_versus, nargs="*", default=[], help="run=against=results_dir: a paired comparison"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (sweep_report) %(levelname)s: %(message)s")
    names = [name for name, _ in args.runs]
    if len(set(names)) != len(names):
        parser.error(f"run names must be unique: {names}")
    make_sweep(args.runs, args.out, args.versus)
    logging.info(f"{args.out}/sweep.md: {len(args.runs)} runs")


if __name__ == "__main__":
    main()
