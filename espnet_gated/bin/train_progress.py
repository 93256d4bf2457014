#!/usr/bin/env python3
"""Training progress with rate and ETA from ESPnet's trainer log (stage 11).

ESPnet's trainer logs every ``log_interval`` steps but says neither how many steps remain
nor when training ends. This filter reads the trainer's output on stdin, appends every line
to ``--log`` unchanged, and prints one short line per report: epoch, step, seconds per step,
ETA, and the losses, accuracy, sparsity and sparsity targets of the interval; after every epoch
one line with its validation figures (the sparsity of the inference gates). Errors pass through.

Usage:
    python -m espnet_gated.bin.s2t_train --config conf/train.yaml ... 2>&1 |
        python -m espnet_gated.bin.train_progress --config conf/train.yaml --log exp/s2t_train/train.log
"""

import argparse
import re
import sys
import time
from pathlib import Path

from espnet_gated.cli import entry_point, existing_file
from espnet_gated.configs import load_yaml

# "3epoch:train:101-150batch: iter_time=0.01, ..., loss=12.3, ..., train_time=1.2"
REPORT = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)")
N_BATCH = re.compile(r"\[train\] mini-batch sizes summary: N-batch=(\d+)")
SHOWN = ("loss", "acc", "sparsity_enc", "target_enc", "sparsity_dec", "target_dec")
# "7epoch results: [train] ..., [valid] loss_ctc=2.9, ..., time=5.09 seconds, total_count=322"
EPOCH_RESULTS = re.compile(r"(\d+)epoch results: .*\[valid\] (.*)")
PASSED = ("WARNING", "training was finished", "Error", "error", "Traceback", "Killed")
PASSED += ("intra-op thread",)  # s2t_train's thread count (espnet_gated.recipe.threads)


def _fields(text: str) -> dict:
    out = {}
    for item in text.split(", "):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            continue
    return out


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Turns trainer report lines into ``epoch e/E step s/S  rate  ETA  metrics`` lines."""

    def __init__(self, max_epoch: int, iters_per_epoch: int = 0):
        self.max_epoch = max_epoch
        self.iters_per_epoch = iters_per_epoch  # 0: learned from the trainer's batch summary
        self.first_step = None  # global step of the first report seen (resumed runs start late)
        self.start = time.monotonic()

    def line(self, text: str):
        results = EPOCH_RESULTS.search(text)
        if results:
            fields = _fields(results.group(2))
            shown = " ".join(f"{k}={fields[k]:.3g}" for k in ("cer_ctc", *SHOWN) if k in fields)
            return f"epoch {results.group(1)}/{self.max_epoch} validation: {shown}"
        if not self.iters_per_epoch:
            found = N_BATCH.search(text)
            if found:
                self.iters_per_epoch = int(found.group(1))
        found = REPORT.search(text)
        if not found:
            return None
        epoch, first, last = (int(found.group(i)) for i in (1, 2, 3))
        fields = _fields(found.group(4))
        per_epoch = self.iters_per_epoch or last
        step = (epoch - 1) * per_epoch + last
        if self.first_step is None:
            self.first_step = step - (last - first + 1)
            self.start = time.monotonic() - fields.get("train_time", 0.0) * (last - first + 1)
        total = self.max_epoch * per_epoch
        elapsed = time.monotonic() - self.start
        rate = elapsed / max(1, step - self.first_step)
        shown = " ".join(f"{k}={fields[k]:.3g}" for k in SHOWN if k in fields)
        return (
            f"epoch {epoch}/{self.max_epoch} step {step}/{total} ({100 * step / total:.0f}%) "
            f"{rate:.2f} s/step ETA {_duration(rate * (total - step))}  {shown}"
        )


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=existing_file, required=True, help="the training config (max_epoch, ...)")
    parser.add_argument("--log", type=Path, required=True, help="file that receives the full trainer output")
    args = parser.parse_args(cmd)
    config = load_yaml(args.config)
    progress = Progress(int(config.get("max_epoch", 40)), int(config.get("num_iters_per_epoch") or 0))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a", encoding="utf-8") as log:
        for text in sys.stdin:
            log.write(text)
            log.flush()
            shown = progress.line(text)
            if shown is None and any(p in text for p in PASSED):
                shown = text.rstrip()
            if shown:
                print(shown, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
