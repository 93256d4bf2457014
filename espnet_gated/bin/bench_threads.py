#!/usr/bin/env python3
r"""Benchmark: torch intra-op threads on a busy machine, for a training step of the recipe's model.

One training step (forward, backward, gradient clipping, ESPnet's optimizer) of the model in
``--config`` (default: the default recipe's ``conf/train.yaml``) on a batch like the recipe's
(``--batch`` utterances of about ``--utt_sec`` seconds, random audio and targets; the vocabulary
is a token list of ``--vocab_size`` entries in the OWSM layout), timed with torch's own thread
count (the default rule's on an idle machine) and with the thread count that
``--num_threads auto`` picks (``espnet_gated.recipe.threads``), alone and beside ``--competitors`` busy processes
(each a Python loop that keeps one core busy; the rule is asked while they run). The cells are
interleaved in ``--rounds`` rounds; each reports the median seconds per step over its rounds.
Writes ``bench_threads.md`` and ``bench_threads.json`` under ``--out``. Run it without
``OMP_NUM_THREADS`` (it would fix both thread counts) and at normal priority.
The library: ``espnet_gated.bench.training_threads``.

Usage:
    python -m espnet_gated.bin.bench_threads --out exp/bench_threads
    python -m espnet_gated.bin.bench_threads --config conf/train.yaml --batch 15 --utt_sec 1.7 \
        --steps 5 --rounds 3 --competitors "0 1" --out exp/bench_threads
"""

import argparse
import json
import logging
import os
from pathlib import Path

from espnet_gated.bench.training_threads import REPO_CONFIG, run_threads, threads_markdown
from espnet_gated.cli import UsageError, entry_point, existing_file
from espnet_gated.utils import atomic_write


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="bench_threads.md and bench_threads.json go here")
    parser.add_argument("--config", type=existing_file, default=REPO_CONFIG, help="training config (its model)")
    parser.add_argument("--vocab_size", type=int, default=1000, help="the default recipe's (--nbpe 1000)")
    parser.add_argument("--batch", type=int, default=15, help="utterances per batch")
    parser.add_argument("--utt_sec", type=float, default=1.7, help="mean utterance length")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--competitors", type=lambda s: [int(x) for x in s.split()], default=[0, 1],
                        help='busy processes beside the training step, e.g. "0 1"')  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    return parser


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    if os.environ.get("OMP_NUM_THREADS"):
        raise UsageError("OMP_NUM_THREADS is set: it fixes torch's default and the rule alike; unset it")
    if args.steps < 1 or args.rounds < 1 or args.batch < 1 or any(k < 0 for k in args.competitors):
        raise UsageError("--steps, --rounds and --batch must be >= 1, --competitors >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (bench_threads) %(levelname)s: %(message)s")
    report = run_threads(args)
    table = threads_markdown(report)
    atomic_write(args.out / "bench_threads.md", table)
    atomic_write(args.out / "bench_threads.json", json.dumps(report, indent=2))
    print(table)
    return report


if __name__ == "__main__":
    main()
