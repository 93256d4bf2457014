#!/usr/bin/env python3
r"""Write a training config: a base YAML, deep-merged with override YAMLs and ``key.path=value`` settings.

ESPnet reads one ``--config``; recipes that fine-tune at several settings (the sparsity
sweep, OWSM fine-tuning) derive each run's config from the base one with this tool.
``--dense`` turns a gated config into ESPnet's dense model of the same architecture
(``e_branchformer``, ``transformer``, ``espnet``, without ``gate_conf``/``sparsity_conf``):
the recipe's reference without pruning.

Usage:
    python -m espnet_gated.bin.make_config conf/train.yaml --merge conf/sweep.yaml \
        --set model_conf.sparsity_conf.decoder_target=0.5 --out exp/sweep/dec0.5/train.yaml
    python -m espnet_gated.bin.make_config conf/train.yaml --dense --merge conf/reference.yaml \
        --out exp/s2t_train/reference.yaml
"""

import argparse
import copy
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


#: gated class name -> ESPnet's dense one, per component
DENSE_NAMES = {
    "encoder": {"gated_e_branchformer": "e_branchformer"},
    "decoder": {"gated_transformer": "transformer"},
    "model": {"gated_espnet": "espnet"},
}
#: model_conf keys of the gated model that ESPnet's plain S2T model does not take
GATED_MODEL_KEYS = ("gate_conf", "sparsity_conf", "distill_conf")


def dense_config(config: dict) -> dict:
    """ESPnet's dense model (stock classes) with the dimensions of a gated or exported config;
    ValueError for a component that is neither the gated nor the dense class."""
    out = copy.deepcopy(config)
    for component, names in DENSE_NAMES.items():
        name = out.get(component)
        if name not in names and name not in names.values():
            raise ValueError(f"{component}: {name!r} is not a gated component (want one of {list(names)})")
        out[component] = names.get(name, name)
    for component in ("encoder_conf", "decoder_conf"):
        out[component] = {k: v for k, v in (out.get(component) or {}).items() if k != "static_mask"}
    out["model_conf"] = {k: v for k, v in (out.get("model_conf") or {}).items() if k not in GATED_MODEL_KEYS}
    return out


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
        config = set_path(config, setting)
    atomic_write(args.out, yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main()
