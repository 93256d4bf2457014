#!/usr/bin/env python3
r"""Train a gated S2T model with ESPnet's trainer (same options as ``espnet2.bin.s2t_train``).

Plus ``--num_threads N|auto``: torch intra-op threads per training process. By default they follow
``espnet_gated.recipe.threads`` (the cores this process may use, shared among the DDP processes ESPnet
starts on this node; ``OMP_NUM_THREADS`` if set; ``auto`` leaves out the cores other work keeps
busy: faster on a shared machine, not reproducible); the choice is logged once.

Usage:
    python -m espnet_gated.bin.s2t_train --config conf/train.yaml \
        --token_list data/token_list/bpe/tokens.txt --bpemodel data/token_list/bpe/bpe.model \
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type dump/raw/train/text,text,text \
        --train_shape_file exp/stats/train/speech_shape --output_dir exp/s2t
    python -m espnet_gated.bin.s2t_train --print_config --model gated_espnet \
        --encoder gated_e_branchformer --decoder gated_transformer
"""

import argparse
import os
import sys

import torch

from espnet_gated.cli import entry_point
from espnet_gated.plugin.tasks import GatedS2TTask, check_training_data, schedule_mismatch
from espnet_gated.recipe.threads import choose_threads, thread_option


def get_parser():
    parser = GatedS2TTask.get_parser()
    parser.add_argument(
        "--num_threads",
        type=thread_option,
        default=None,
        help="torch intra-op threads per training process, or 'auto' (default: espnet_gated.recipe.threads; not saved)",
    )
    return parser


def local_processes(args: argparse.Namespace) -> int:
    """Training processes on this node: ESPnet spawns one per GPU with --multiprocessing_distributed."""
    return max(1, args.ngpu) if args.multiprocessing_distributed else 1


def set_threads(args: argparse.Namespace) -> None:
    """Set (and log once) the intra-op threads of this process and of the processes it spawns."""
    threads, why = choose_threads(local_processes(args), args.num_threads)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # DDP workers spawned by ESPnet start a new torch
    print(f"s2t_train: {threads} torch intra-op thread(s) per process ({why})", file=sys.stderr, flush=True)


def check(args: argparse.Namespace) -> None:
    """The options and the data, before ESPnet builds anything (the errors name the option and file)."""
    GatedS2TTask.check_required_command_args(args)
    check_training_data(args)
    mismatch = schedule_mismatch(args)
    if mismatch:
        print(f"WARNING: s2t_train: {mismatch}; change them together (--config {args.config})", file=sys.stderr)


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    if not args.print_config:
        check(args)
        set_threads(args)
    del args.num_threads  # not an ESPnet option: kept out of the saved config.yaml
    GatedS2TTask.main(args=args)


if __name__ == "__main__":
    main()
