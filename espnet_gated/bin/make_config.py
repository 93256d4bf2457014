#!/usr/bin/env python3
r"""Write a training config: a base YAML, deep-merged with override YAMLs and ``key.path=value`` settings.

ESPnet reads one ``--config``; recipes that fine-tune at several settings (the sparsity
sweep, OWSM fine-tuning) derive each run's config from the base one with this tool.

Usage:
    python -m espnet_gated.bin.make_config conf/train.yaml --merge conf/sweep.yaml \
        --set model_conf.sparsity_conf.decoder_target=0.5 --out exp/sweep/dec0.5/train.yaml
"""

import argparse
from pathlib import Path

import yaml

from espnet_gated.cli import UsageError, entry_point, existing_file
from espnet_gated.utils import atomic_write


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:  # a syntax error then names the file and line
        return yaml.safe_load(f) or {}


def deep_merge(base: dict, override: dict) -> dict:
    """Values of ``override`` win; nested dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_path(config: dict, dotted: str) -> dict:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a copy of ``config``."""
    if "=" not in dotted:
        raise UsageError(f"--set {dotted}: expected key.path=value")
    path, _, raw = dotted.partition("=")
    override = yaml.safe_load(raw)
    for key in reversed(path.split(".")):
        override = {key: override}
    return deep_merge(config, override)


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=existing_file)
    parser.add_argument("--merge", type=existing_file, action="append", default=[], help="override YAML (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="key.path=value (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(cmd)
    config = load_yaml(args.base)
    for path in args.merge:
        config = deep_merge(config, load_yaml(path))
    for setting in args.settings:
        config = set_path(config, setting)
    atomic_write(args.out, yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main()
