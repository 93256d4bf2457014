"""Start a gated model from a pretrained dense OWSM model (``--init_from``).

:func:`init_from` takes a model directory, a pack (``.zip``) or a hub name such as ``espnet/owsm_v3.1_ebf``
(:func:`espnet_gated.sharing.locate.fetch`) and writes, under ``out``:

* ``train.yaml``: a training config for ``espnet_gated.bin.s2t_train --config``. The architecture
  (frontend, normalization, encoder, decoder, CTC) is the pretrained model's, with
  ``e_branchformer`` -> ``gated_e_branchformer``, ``transformer`` -> ``gated_transformer`` and
  ``espnet`` -> ``gated_espnet``; everything else comes from the recipe's training config, whose
  ``model_conf`` (``gate_conf``, ``sparsity_conf``) and ``preprocessor_conf`` are merged over the
  pretrained ones. Architecture keys of the recipe config that would change the model are ignored
  (logged, and listed in ``init_from.yaml``); dropout rates and other shape-neutral options apply.
* ``config.yaml``: the same as a complete ESPnet config, so the model decodes before fine-tuning;
* ``init.pth``: the gated model's full state dict, for ESPnet's ``--init_param``: the pretrained
  weights (checked key by key: the only keys the checkpoint may lack are the gate predictor's,
  which start freshly initialised, i.e. all gates open; any other missing, unexpected or
  differently shaped key is an error naming it);
* ``tokens.txt``, ``bpe.model``: the pretrained token list and sentencepiece model (stage 5 uses
  them through ``--token_list_dir``), with the new languages and tasks of ``add_langs``/``add_tasks``
  (:mod:`espnet_gated.sharing.vocabulary`), and ``feats_stats.npz`` where the model uses ``global_mvn``;
* ``init_from.yaml``: where everything came from (written last), and ``config_fixes``: the keys of
  ESPnet's development branch that were mapped or dropped (:data:`espnet_gated.sharing.locate.DEV_BRANCH_KEYS`).

``num_att_plot`` comes from the pretrained config unless the recipe config sets it (OWSM: 0).

Usage (see ``espnet_gated/bin/init_from.py`` for the command line)::

    from espnet_gated.sharing.init_from import init_from
    init_from("espnet/owsm_v3.1_ebf", "exp/init_owsm", train_config="conf/train.yaml", add_langs=["xyz"])
"""

import argparse
import logging
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import yaml

from espnet_gated.configs import deep_merge
from espnet_gated.plugin.tasks import GatedS2TTask, preprocessor_defaults
from espnet_gated.plugin.weights import WeightsError, load_checked, read_state_dict
from espnet_gated.sharing.locate import GATED_NAMES, Pretrained, PretrainedError, fetch, locate, read_yaml
from espnet_gated.sharing.vocabulary import extend_bpemodel, insert_tokens, parse_new_tokens, remap_rows
from espnet_gated.utils import PathLike, atomic_output, atomic_write

#: config keys that define the pretrained network and its input features: taken from the pretrained model
ARCH_KEYS = (
    "input_size",
    "frontend",
    "frontend_conf",
    "normalize",
    "normalize_conf",
    "preencoder",
    "preencoder_conf",
    "encoder",
    "encoder_conf",
    "postencoder",
    "postencoder_conf",
    "decoder",
    "decoder_conf",
)
#: options inside ``*_conf`` of ARCH_KEYS that a recipe may change (no weight shape depends on them)
TUNABLE = frozenset(
    {
        "dropout_rate",
        "positional_dropout_rate",
        "attention_dropout_rate",
        "self_attention_dropout_rate",
        "src_attention_dropout_rate",
        "layer_drop_rate",
        "use_flash_attn",
        "gradient_checkpoint_layers",
    }
)
#: merged key by key, recipe over pretrained
MERGED_KEYS = ("model_conf", "preprocessor", "preprocessor_conf", "ctc_conf", "specaug", "specaug_conf")
#: never taken from the recipe config (they are what init_from writes)
OWN_KEYS = ("token_list", "bpemodel", "token_type", "init_param", "model", "encoder", "decoder")
GATE_PREFIX = "gate_predictor."
#: training options carried over from the pretrained config unless the recipe config sets them
#: (OWSM sets num_att_plot: 0; ESPnet's default of 3 costs ~40 s of attention plots per epoch on a CPU)
CARRIED_KEYS = ("num_att_plot",)


def gated_training_config(pre: Pretrained, recipe: Optional[dict], files: Dict[str, Path]) -> Tuple[dict, List[str]]:
    """(training config, ignored recipe keys): see the module docstring."""
    recipe = dict(recipe or {})
    ignored = []
    out: dict = {}
    for key, value in recipe.items():
        if key in OWN_KEYS or key in ARCH_KEYS or key in MERGED_KEYS:
            continue
        out[key] = value
    for key in ARCH_KEYS:
        if key not in pre.config:
            continue
        value = pre.config[key]
        mine = recipe.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            value = dict(value)
            for k, v in mine.items():
                if k in TUNABLE:
                    value[k] = v
                elif value.get(k) != v:
                    ignored.append(f"{key}.{k}={v!r} (pretrained: {value.get(k)!r})")
        elif key in recipe and mine != value and not (key.endswith("_conf") and not mine):
            ignored.append(f"{key}={mine!r} (pretrained: {value!r})")
        out[key] = value
    for key in CARRIED_KEYS:
        if key in pre.config and key not in recipe:
            out[key] = pre.config[key]
    for key in MERGED_KEYS:
        base, mine = pre.config.get(key), recipe.get(key)
        if isinstance(base, dict) and isinstance(mine, dict):
            out[key] = deep_merge(base, mine)
        elif key in recipe:
            out[key] = mine
        elif base is not None:
            out[key] = base
    for key, names in GATED_NAMES.items():
        out[key] = names[pre.config.get(key, "espnet")]
    if "stats_file" in files:
        out["normalize_conf"] = {**(out.get("normalize_conf") or {}), "stats_file": str(files["stats_file"])}
    out.update(token_type="bpe", token_list=str(files["token_list"]), bpemodel=str(files["bpemodel"]))
    return out, ignored


def full_args(train_yaml: Path) -> argparse.Namespace:
    """ESPnet's parsed options for ``--config train_yaml`` (as GatedS2TTask.main sees them)."""
    parser = GatedS2TTask.get_parser()
    try:
        args = parser.parse_args(["--config", str(train_yaml)])
    except SystemExit:
        raise PretrainedError(f"{train_yaml}: ESPnet rejects this config (see the message above)") from None
    if getattr(args, "preprocessor", None) == "s2t":
        args.preprocessor_conf = {**preprocessor_defaults(), **(args.preprocessor_conf or {})}
    return args


def build_gated(args: argparse.Namespace, config_file: Path) -> torch.nn.Module:
    try:
        return GatedS2TTask.build_model(args)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise PretrainedError(f"building the gated model from {config_file} failed: {e}") from e


def backbone_modules(model: torch.nn.Module) -> List[str]:
    """Top-level modules with parameters, except the gate predictor (for ``freeze_param``)."""
    return sorted({k.split(".")[0] for k, _ in model.named_parameters()} - {GATE_PREFIX.rstrip(".")})


def init_from(
    src: PathLike,
    out: PathLike,
    train_config: Optional[PathLike] = None,
    add_langs: Iterable[str] = (),
    add_tasks: Iterable[str] = (),
    freeze_backbone: bool = False,
    config_file: Optional[PathLike] = None,
    model_file: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
) -> Dict[str, Path]:
    """Write the gated training config, the initial checkpoint and the token files (module docstring)."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    out = Path(out).resolve()
    for stale in ("init_from.yaml", "init.pth"):  # a failed run must not leave a complete-looking directory
        (out / stale).unlink(missing_ok=True)
    root = fetch(src, cache_dir)
    pre = locate(root, config_file, model_file)
    logging.info(f"pretrained: config {pre.config_file}, weights {pre.model_file}, bpe {pre.bpemodel}")
    recipe = None
    if train_config is not None:
        recipe = read_yaml(Path(train_config))

    new = parse_new_tokens(add_langs, add_tasks)
    tokens, added = insert_tokens(pre.token_list, new)
    out.mkdir(parents=True, exist_ok=True)
    files = {"token_list": out / "tokens.txt", "bpemodel": out / "bpe.model"}
    atomic_write(files["token_list"], "".join(f"{t}\n" for t in tokens))
    extend_bpemodel(pre.bpemodel, files["bpemodel"], added)
    if pre.stats_file is not None:
        files["stats_file"] = out / "feats_stats.npz"
        with atomic_output(files["stats_file"], "wb") as f, open(pre.stats_file, "rb") as g:
            shutil.copyfileobj(g, f)

    # a first pass without freeze_param: the backbone's module names come from the built model
    config, ignored = gated_training_config(pre, recipe, files)
    for item in ignored:
        logging.warning(f"--init_from: ignoring {item} of {train_config}: the architecture is the pretrained one")
    files["train_config"] = out / "train.yaml"
    atomic_write(files["train_config"], yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    args = full_args(files["train_config"])
    model = build_gated(args, files["train_config"])
    freeze = backbone_modules(model) if freeze_backbone else []
    if freeze:
        config["freeze_param"] = args.freeze_param = freeze
        atomic_write(files["train_config"], yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    try:
        state = read_state_dict(pre.model_file)
        if added:
            templates = {token: tmpl for _, token, tmpl in new}
            state = remap_rows(state, pre.token_list, tokens, templates)
        # through the model's own loading: an old release's key names are upgraded to this one's
        fresh = load_checked(model, state, pre.model_file, pre.config_file)
    except WeightsError as e:
        raise PretrainedError(str(e).replace(" the model built from", " the gated model built from")) from None
    files["init_param"] = out / "init.pth"
    with atomic_output(files["init_param"], "wb") as f:
        torch.save(model.state_dict(), f)  # exactly what --init_param will load

    files["config"] = out / "config.yaml"
    with atomic_output(files["config"]) as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    record = {
        "source": str(src),
        "model_dir": str(pre.root),
        "config": str(pre.config_file),
        "model_file": str(pre.model_file),
        "bpemodel": str(pre.bpemodel),
        "stats_file": str(pre.stats_file) if pre.stats_file else None,
        "train_config": str(train_config) if train_config else None,
        "ignored_recipe_keys": ignored,
        "config_fixes": pre.fixes,
        "added_tokens": added,
        "freeze_param": freeze,
        "fresh_keys": len(fresh),
        "params": sum(p.numel() for p in model.parameters()),
        "gate_predictor_params": sum(p.numel() for p in model.gate_predictor.parameters()),
    }
    files["record"] = out / "init_from.yaml"
    atomic_write(files["record"], yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    logging.info(
        f"{out}: {record['params'] / 1e6:.1f}M parameters ({len(fresh)} fresh gate predictor tensors), "
        f"added tokens: {added or 'none'}, frozen: {freeze or 'nothing'}"
    )
    return files
