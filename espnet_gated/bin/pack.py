#!/usr/bin/env python3
r"""Pack a trained gated model as one zip with a model card (stage 14 of the stage engine).

ESPnet's packed layout (``meta.yaml``, ``exp/<tag>/config.yaml``, the model file, the token list,
the BPE model, the feature statistics; see ``espnet_gated/sharing/pack.py``) plus ``exp/<tag>/results/``
(stage 13's RESULTS.md, scores.json, usage heatmaps) and ``README.md``, the model card: the
scores, the heatmaps and how to load the model. The zip loads with
``GatedSpeech2Text.from_pretrained(ZIP)``, ``s2t_inference --model_tag ZIP`` and ``init_from --src ZIP``.

Usage:
    python -m espnet_gated.bin.pack --s2t_train_config exp/s2t_train/config.yaml \
        --s2t_model_file exp/s2t_train/valid.acc.ave.pth --results_dir exp/s2t_train/results \
        --out exp/s2t_train/s2t_train_valid.acc.ave.zip --hf_repo user/gated-model
"""

import argparse
import logging

from espnet_gated.cli import entry_point, existing_dir, existing_file


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_gated.bin.pack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--s2t_train_config", type=existing_file, required=True, help="config.yaml of the training run")
    parser.add_argument("--s2t_model_file", type=existing_file, required=True, help="the model file to pack (.pth)")
    parser.add_argument(
        "--results_dir", type=existing_dir, help="stage 13's results directory (scores for the model card)"
    )
    parser.add_argument("--out", required=True, help="the pack (.zip)")
    parser.add_argument("--hf_repo", help="hub repository the model card's usage snippet loads (default: the zip)")
    return parser


@entry_point
def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (pack) %(levelname)s: %(message)s")
    from espnet_gated.sharing.pack import pack  # imports ESPnet (~10 s): after the options are checked

    pack(args.s2t_train_config, args.s2t_model_file, args.out, args.results_dir, args.hf_repo)


if __name__ == "__main__":
    main()
