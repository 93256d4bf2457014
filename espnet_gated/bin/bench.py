#!/usr/bin/env python3
r"""Benchmark: does skipped compute become real time? Dense ESPnet vs gated decoding.

Usage:
    # throughput on a whole test set: utterances/s and real-time factor, batches of 1 and 16
    python -m espnet_gated.bin.bench --throughput --s2t_train_config exp/s2t_train/config.yaml \
        --s2t_model_file exp/s2t_train/valid.acc.ave.pth --wav_scp dump/raw/test_deu_asr/wav.scp \
        --lang_sym deu --task_sym asr --batch "1 16" --threads 1

    # the same on OWSM v3.1 base-sized random weights (32 synthetic utterances of 2.5-7.5 s)
    python -m espnet_gated.bin.bench --throughput --size base --utt_sec 5 --batch "1 16" --threads 1

    # OWSM v3.1 base-sized random weights on CPU, beams 5 and 10, with and without CTC
    python -m espnet_gated.bin.bench --size base --beam "5 10" --ctc_weight "0 0.3" \
        --n_utts 3 --utt_sec 5 --decode_len 30 --threads 1 --out /tmp/bench_base

    # quick smoke run
    python -m espnet_gated.bin.bench --size tiny --n_utts 2 --beam 3 --ctc_weight 0 --out /tmp/bench_tiny

    # a trained gated model on real audio (adds the learned-mask variant)
    python -m espnet_gated.bin.bench --s2t_train_config exp/s2t/config.yaml \
        --s2t_model_file exp/s2t/valid.acc.ave.pth --wav_scp dump/raw/test_deu_asr/wav.scp \
        --lang_sym deu --task_sym asr --decode_len 0 --out exp/s2t/bench

    # a budget-conditioned model (stage 17's budget run) asked for three skip rates
    python -m espnet_gated.bin.bench --s2t_train_config exp/s2t_train_sweep/dec_budget/config.yaml \
        --s2t_model_file exp/s2t_train_sweep/dec_budget/valid.acc.ave.pth --wav_scp dump/raw/test_deu_asr/wav.scp \
        --lang_sym deu --task_sym asr --decode_len 0 --sparsity "0.25 0.5 0.75" --sides dec --sparsities 0.5

    # gated variants decode 4 utterances at once (ESPnet's dense decoding stays one at a time)
    python -m espnet_gated.bin.bench --size base --batch 4 --n_utts 8 --out /tmp/bench_batch

Two modes: ``--throughput`` decodes a whole set once per variant and repeat
(:mod:`espnet_gated.bench.throughput`); without it each utterance is timed, the variants
round-robin (:mod:`espnet_gated.bench.latency`). The variants, the models, what is measured and
how it is counted: the modules of :mod:`espnet_gated.bench`. Outputs under ``--out`` (default
``exp/bench/<mode>_<size or model>_<time>``): bench.md (also printed), bench.json, bench.png,
models/. ``--device cuda`` times a GPU (synchronised around each timed decode); ``--dtype
bfloat16`` decodes the gated variants in half precision (``espnet_gated.decoding.inference``).
"""

import argparse
import logging
import time
from pathlib import Path

from espnet_gated.bench.latency import run_latency
from espnet_gated.bench.models import SIZES
from espnet_gated.bench.rendering import latency_markdown, throughput_markdown
from espnet_gated.bench.throughput import run_throughput
from espnet_gated.bench.variants import SIDES
from espnet_gated.cli import UsageError, entry_point
from espnet_gated.decoding.inference import DTYPES

logger = logging.getLogger("espnet_gated.bench")


def _floats(text: str):
    return [float(x) for x in text.replace(",", " ").split()]


def _ints(text: str):
    return [int(x) for x in text.replace(",", " ").split()]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time dense ESPnet vs gated decoding (see the module docstring and espnet_gated.bench)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage:", 1)[1].split("\n\n", 6)[0],
    )
    add = parser.add_argument
    add("--out", default=None, help="for bench.md/json/png, models/ (default exp/bench/<mode>_<size or model>_<time>)")
    add("--throughput", action="store_true", help="decode the whole set per variant (--batch at a time): utt/s and RTF")
    add("--size", choices=sorted(SIZES), default="base", help="backbone size for random weights")
    add("--vocab_size", type=int, default=None, help="for random weights (default: base/small 50000 as OWSM, tiny 200)")
    add("--s2t_train_config", default=None, help="config.yaml of a trained gated model")
    add("--s2t_model_file", default=None, help="its weights")
    add("--wav_scp", default=None, help="decode these utterances (first --n_utts) instead of synthetic audio")
    add("--lang_sym", default="eng")
    add("--task_sym", default="asr")
    add("--beam", type=_ints, default=[5], help='beam sizes, e.g. "5 10"')
    add("--ctc_weight", type=_floats, default=None, help='CTC weights, "0 0.3" (default 0; throughput: "0 0.5")')
    add("--batch", type=_ints, default=[1], help='utterances the gated variants decode at once (throughput: "1 16")')
    add("--device", default="cpu", help="cpu or cuda[:N]")
    add("--dtype", choices=DTYPES, default="float32", help="of the gated variants (half: autocast); dense: float32")
    add("--threads", type=int, default=1, help="torch intra-op threads")
    add("--n_utts", type=int, default=None, help="utterances (default 4; throughput: all of --wav_scp or 32)")
    add("--utt_sec", type=float, default=5.0, help="synthetic utterance length (and padding length)")
    add("--decode_len", type=int, help="fixed tokens (<eos> suppressed); 0: natural (default 30, trained 0)")
    add("--maxlenratio", type=float, default=0.0, help="with --decode_len 0")
    add("--sparsities", type=_floats, default=[0.25, 0.5, 0.75], help='e.g. "0.25 0.5 0.75"')
    add("--sparsity", type=_floats, default=[], help='budgets asked of a budget-conditioned model, "0.25 0.5"')
    add("--sides", type=lambda s: s.split(), default=list(SIDES), help='e.g. "enc dec both"')
    add("--export_mask", default="auto", help='mask of the exported variant: "auto", "<side>@<s>" or "enc=... dec=..."')
    add("--no_export", action="store_true", help="skip the exported variant")
    add("--warmup", type=int, default=1, help="untimed decodes per model before timing")
    add("--repeats", type=int, default=1, help="decodes per utterance and variant (interleaved); the fastest counts")
    add("--stat", choices=("median", "mean"), default="median", help="over utterances")
    add("--seed", type=int, default=0)
    add("--log_level", default="WARNING", help="of ESPnet's own logs (progress is always shown)")
    return parser


def resolve_defaults(args) -> None:
    """Fill the options whose default depends on the mode or the model (see their help)."""
    if args.ctc_weight is None:
        args.ctc_weight = [0.0, 0.5] if args.throughput else [0.0]
    if args.n_utts is None:
        args.n_utts = None if args.throughput and args.wav_scp else (32 if args.throughput else 4)
    if args.decode_len is None:
        args.decode_len = 0 if args.s2t_train_config else 30
    if args.out is None:
        what = Path(args.s2t_train_config).parent.name if args.s2t_train_config else args.size
        mode = "throughput" if args.throughput else "latency"
        args.out = str(Path("exp") / "bench" / f"{mode}_{what}_{time.strftime('%Y%m%d-%H%M%S')}")


def check_options(args) -> None:
    for side in args.sides:
        if side not in SIDES:
            raise UsageError(f"--sides takes enc, dec, both; got '{side}'")
    if any(not 0 <= s <= 1 for s in args.sparsities):
        raise UsageError("--sparsities must be in [0, 1]")
    if args.s2t_train_config is None and args.s2t_model_file is not None:
        raise UsageError("--s2t_model_file needs --s2t_train_config")
    if any(b < 1 for b in args.batch):
        raise UsageError("--batch must be >= 1")
    if not args.throughput and len(args.batch) != 1:
        raise UsageError("several --batch sizes need --throughput")


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    resolve_defaults(args)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    logger.setLevel(logging.INFO)  # progress lines, while ESPnet's per-utterance INFO logs follow --log_level
    check_options(args)
    logger.info(f"output: {args.out}")
    if args.throughput:
        report = run_throughput(args)
        print(throughput_markdown(report))
    else:
        args.batch = args.batch[0]
        report = run_latency(args)
        print(latency_markdown(report))
    return report


if __name__ == "__main__":
    main()
