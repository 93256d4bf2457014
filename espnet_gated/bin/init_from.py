#!/usr/bin/env python3
r"""Prepare fine-tuning of a pretrained dense OWSM model as a gated model (what ``s2t.sh --init_from`` runs).

SRC is an ESPnet S2T model directory (packed by ESPnet, a Hugging Face snapshot, or an ESPnet exp
tree), a packed model (.zip of espnet_gated.bin.pack, unpacked next to it) or a hub name (fetched
with huggingface_hub where the network allows; OWSM v3.1 and v4). OUT receives
``train.yaml`` (for ``s2t_train --config``), ``init.pth`` (for ``--init_param``), ``tokens.txt`` and
``bpe.model`` (for ``--token_list``/``--bpemodel``, or ``s2t.sh --token_list_dir OUT``),
``config.yaml`` (to decode the model as it is), ``feats_stats.npz`` and ``init_from.yaml`` (what came
from where, and the development-branch config keys that were mapped or dropped).
Details: ``espnet_gated/sharing/init_from.py`` (the configs and weights), ``locate.py`` (finding the model's files)
and ``vocabulary.py`` (new languages and tasks).

Usage:
    python -m espnet_gated.bin.init_from --src espnet/owsm_v3.1_ebf --out exp/init_owsm_v3.1_ebf \
        --train_config egs2/europarl_st/s2t1/conf/train.yaml
    python -m espnet_gated.bin.init_from --src /models/owsm_v3.1_ebf_base --out exp/init_base \
        --train_config conf/train.yaml --add_langs xyz,abc=deu --add_tasks st_xyz --freeze_backbone true
    python -m espnet_gated.bin.s2t_train --config exp/init_base/train.yaml --init_param exp/init_base/init.pth ...
"""

import argparse
import logging
import sys
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet_gated.cli import entry_point, existing_file


def _items(value: str):
    return [item for item in value.replace(",", " ").split() if item]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_gated.bin.init_from",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--src", required=True, help="model dir, pack (.zip) or hub name (e.g. espnet/owsm_v3.1_ebf)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--train_config",
        type=existing_file,
        help="recipe training config: optimizer, batches, gate_conf, sparsity_conf, ...",
    )
    parser.add_argument(
        "--add_langs", type=_items, default=[], help="new languages, e.g. xyz or xyz=deu (rows copied from <deu>)"
    )
    parser.add_argument("--add_tasks", type=_items, default=[], help="new tasks, e.g. st_xyz or st_xyz=st_deu")
    parser.add_argument(
        "--freeze_backbone", type=str2bool, default=False, help="train only the gate predictor (ESPnet freeze_param)"
    )
    parser.add_argument("--config", type=existing_file, help="the pretrained config.yaml, if the directory has several")
    parser.add_argument("--model_file", type=existing_file, help="the pretrained .pth, if the directory has several")
    parser.add_argument("--cache_dir", type=Path, help="Hugging Face cache directory (default: the hub's)")
    return parser


@entry_point
def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (init_from) %(levelname)s: %(message)s")
    from espnet_gated.sharing.init_from import init_from  # imports ESPnet (~10 s): after the options are checked

    files = init_from(
        args.src,
        args.out,
        train_config=args.train_config,
        add_langs=args.add_langs,
        add_tasks=args.add_tasks,
        freeze_backbone=args.freeze_backbone,
        config_file=args.config,
        model_file=args.model_file,
        cache_dir=args.cache_dir,
    )
    for name, path in files.items():
        logging.info(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
