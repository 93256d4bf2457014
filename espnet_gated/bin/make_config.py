#!/usr/bin/env python3
r"""Write a training config: a base YAML, deep-merged with override YAMLs and ``key.path=value`` settings.

ESPnet reads one ``--config``; recipes that fine-tune at several settings (the sparsity
sweep, OWSM fine-tuning) derive each run's config from the base one with this tool.
``--dense`` turns a gated config into ESPnet's dense model of the same architecture
(``e_branchformer``, ``transformer``, ``espnet``, without the gated model's options):
the recipe's reference without pruning (``espnet_gated.configs``).

Usage:
    python -m espnet_gated.bin.make_config conf/train.yaml --merge conf/sweep.yaml \
        --set model_conf.sparsity_conf.decoder_target=0.5 --out exp/sweep/dec0.5/train.yaml
    python -m espnet_gated.bin.make_config conf/train.yaml --dense --out exp/s2t_train/reference.yaml
"""

import argparse
from pathlib import Path

import yaml

from espnet_gated.cli import UsageError, entry_point, existing_file
from espnet_gated.configs import deep_merge, dense_config, load_yaml, set_path
from espnet_gated.utils import atomic_write


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=existing_file)
    parser.add_argument("--merge", type=existing_file, action="append", default=[], help="override YAML (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="key.path=value (repeatable)")
    parser.add_argument("--dense", action="store_true", help="the dense ESPnet model of the gated base config")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    config = load_yaml(args.base)
    if args.dense:
        try:
            config = dense_config(config)
        except ValueError as e:
            raise UsageError(f"--dense: {args.base}: {e}") from None
    for path in args.merge:
        config = deep_merge(config, load_yaml(path))
    for setting in args.settings:
        try:
            config = set_path(config, setting)
        except ValueError as e:
            raise UsageError(f"--set {e}") from None
    atomic_write(args.out, yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main()
