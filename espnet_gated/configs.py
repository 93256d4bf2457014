"""Training and model configs (ESPnet's YAML): read one, merge overrides into it, derive the dense model's.

ESPnet reads one ``--config``; the recipe derives each run's config from the base one (the sparsity sweep, the
reference without pruning, the pretraining, OWSM fine-tuning) with these functions.
"""

import copy
from pathlib import Path
from typing import Dict, List, Optional, Union

import yaml


class ConfigError(ValueError):
    """A config file that cannot be read as a YAML mapping."""


def load_yaml(path: Union[str, Path]) -> Dict:
    """The mapping of a YAML file; ConfigError naming the file (and line) for a missing, unreadable or
    malformed one, or one that is not a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a YAML mapping")
    return data


def deep_merge(base: Dict, override: Dict) -> Dict:
    """Values of ``override`` win; nested dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_path(config: Dict, dotted: str) -> Dict:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a copy of ``config``; ValueError without ``=``."""
    if "=" not in dotted:
        raise ValueError(f"{dotted}: expected key.path=value")
    path, _, raw = dotted.partition("=")
    override = yaml.safe_load(raw)
    for key in reversed(path.split(".")):
        override = {key: override}
    return deep_merge(config, override)


#: sparsity_conf's fixed-target key of each side
TARGET_KEYS = {"enc": "encoder_target", "dec": "decoder_target"}


def target_tasks(config: Dict) -> List[str]:
    """The tasks that ``config`` holds to targets of their own (the keys of its per-task targets, sorted), or []
    where its targets (if any) are held over all utterances."""
    sparsity = (config.get("model_conf") or {}).get("sparsity_conf") or {}
    per_task = [sparsity[key] for key in TARGET_KEYS.values() if isinstance(sparsity.get(key), dict)]
    return sorted({task for targets in per_task for task in targets})


def with_sparsity(config: Dict, targets: Dict[str, Optional[float]], budget: Optional[Dict] = None) -> Dict:
    """``config`` (a copy) pruned as one run of a sweep: ``targets`` side -> skip rate (None: no target) and,
    if given, ``budget`` (sparsity_conf.budget, e.g. {sample: [0, 0.8], sides: [dec]}), in the shape of the
    config's own targets. Why: where the base config holds each task to its target (conf/train.yaml), so must
    every run and the budget model, or the sweep's 0.5 run is not the recipe's gated model and a budget held
    per utterance is compared with targets that let the tasks split the budget."""
    tasks = target_tasks(config)
    sparsity = {key: None for key in TARGET_KEYS.values()}
    for side, value in targets.items():
        sparsity[TARGET_KEYS[side]] = {task: value for task in tasks} if tasks and value is not None else value
    if budget is not None:
        sparsity["budget"] = {**budget, **({"tasks": tasks} if tasks else {})}
    return deep_merge(config, {"model_conf": {"sparsity_conf": sparsity}})


#: gated class name -> ESPnet's dense one, per component
DENSE_NAMES = {
    "encoder": {"gated_e_branchformer": "e_branchformer"},
    "decoder": {"gated_transformer": "transformer"},
    "model": {"gated_espnet": "espnet"},
}
#: model_conf keys of the gated model that ESPnet's plain S2T model does not take
GATED_MODEL_KEYS = ("gate_conf", "sparsity_conf", "distill_conf")


def dense_config(config: Dict) -> Dict:
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
