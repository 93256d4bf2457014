#!/usr/bin/env python3
r"""Write a training config: a base YAML, deep-merged with override YAMLs and ``key.path=value`` settings.

ESPnet reads one ``--config``; recipes that fine-tune at several settings (the sparsity
sweep, OWSM fine-tuning) derive each run's config from the base one with this tool.
``--dense`` turns a gated config into ESPnet's dense model of the same architecture
(``e_branchformer``, ``transformer``, ``espnet``, without the gated model's options):
the recipe's reference without pruning (``espnet_gated.configs``). ``--target`` and
``--budget`` prune the run as one point of a sweep, per task where the base config's
targets are per task (``configs.with_sparsity``); the sides they do not name get no target.

Usage:
    python -m espnet_gated.bin.make_config conf/train.yaml --merge conf/sweep.yaml \
        --target dec=0.5 --out exp/sweep/dec0.5.yaml
    python -m espnet_gated.bin.make_config conf/train.yaml --budget dec=0,0.8 --out exp/sweep/dec_budget.yaml
    python -m espnet_gated.bin.make_config conf/train.yaml --dense --out exp/s2t_train/reference.yaml
"""

import argparse
from pathlib import Path

import yaml

from espnet_gated.cli import UsageError, entry_point, existing_file
from espnet_gated.configs import TARGET_KEYS, deep_merge, dense_config, load_yaml, set_path, with_sparsity
from espnet_gated.utils import atomic_write


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=existing_file)
    parser.add_argument("--merge", type=existing_file, action="append", default=[], help="override YAML (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="key.path=value (repeatable)")
    parser.add_argument("--dense", action="store_true", help="the dense ESPnet model of the gated base config")
    parser.add_argument(
        "--target",
        dest="targets",
        action="append",
        default=[],
        type=side_target,
        help="SIDE=SKIP_RATE (enc or dec; repeatable): a fixed target, per task as the base's",
    )
    parser.add_argument("--budget", type=side_budget, help="SIDES=LOW,HIGH (dec, enc or enc+dec): a budget model")
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
    if args.targets or args.budget:
        config = with_sparsity(config, dict(args.targets), args.budget)
    atomic_write(args.out, yaml.safe_dump(config, sort_keys=False))


def side_target(text: str):
    """``dec=0.5`` -> ("dec", 0.5); ``enc=null`` -> ("enc", None)."""
    side, _, value = text.partition("=")
    if side not in TARGET_KEYS or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE=SKIP_RATE with SIDE one of {list(TARGET_KEYS)}")
    if value == "null":
        return side, None
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the skip rate must be a number in [0, 1] or null")
    return side, rate


def side_budget(text: str):
    """``dec=0,0.8`` -> {sample: [0.0, 0.8], sides: [dec]} (sparsity_conf.budget; the model checks the range)."""
    sides, _, bounds = text.partition("=")
    try:
        low, high = (float(v) for v in bounds.split(","))
    except ValueError:
        low = high = None
    if low is None or not sides or not set(sides.split("+")) <= set(TARGET_KEYS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIDES=LOW,HIGH like dec=0,0.8 or enc+dec=0,0.8")
    return {"sample": [low, high], "sides": sides.split("+")}


if __name__ == "__main__":
    main()
