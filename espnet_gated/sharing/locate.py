"""Finding a pretrained model and its files: a model directory, a pack (``.zip``) or a hub name.

:func:`fetch` turns what the user names into a local directory: an ESPnet S2T model directory (as packed by
ESPnet, downloaded from the Hugging Face hub, or an ESPnet ``exp/`` tree), a pack of ``espnet_gated.bin.pack``
(unpacked once, :mod:`espnet_gated.sharing.archive`) or a hub name such as ``espnet/owsm_v3.1_ebf``.
:func:`locate` finds the directory's config, weights, token list, BPE model and feature statistics, for
``init_from``, ``GatedSpeech2Text.from_pretrained``, ``s2t_inference`` and ``pack`` alike.

Paths recorded in the config (``bpemodel``, ``token_list``, ``normalize_conf.stats_file``) are resolved
relative to the model directory first; if they do not exist there the directory is searched for the file (the
longest matching path suffix wins), so that a moved directory still loads.

The config is read as ESPnet 202511 builds it: the keys of ESPnet's development branch that some OWSM hub
configs carry (ESPnet issue #5973: ``attention_qk_norm``, ``self_attention_use_flash_attn``, ...) are mapped
to 202511's ``qk_norm``/``use_flash_attn`` or dropped (:data:`DEV_BRANCH_KEYS`), each one logged and kept in
:attr:`Pretrained.fixes`; any other encoder/decoder option that 202511 does not take is an error naming it.
OWSM v4 (``conv2d8`` subsampling, 128 mel bins) loads like v3.1: the architecture is read from its config.
"""

import inspect
import logging
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

from espnet_gated.configs import ConfigError, load_yaml
from espnet_gated.plugin.tasks import read_token_list
from espnet_gated.sharing.archive import is_archive, unpack
from espnet_gated.utils import PathLike

#: dense -> gated class names
GATED_NAMES = {
    "encoder": {"e_branchformer": "gated_e_branchformer", "gated_e_branchformer": "gated_e_branchformer"},
    "decoder": {"transformer": "gated_transformer", "gated_transformer": "gated_transformer"},
    "model": {"espnet": "gated_espnet", "gated_espnet": "gated_espnet"},
}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_NAMED = 20
#: the checkpoint a recipe decodes (s2t.sh --inference_model): chosen when a directory holds several
INFERENCE_MODEL = "valid.acc.ave.pth"
#: keys of ESPnet's development branch found in some OWSM hub configs (ESPnet issue #5973), which
#: ESPnet 202511's classes reject: ``*_conf`` section -> {dev key: 202511 key}
DEV_BRANCH_KEYS = {
    "encoder_conf": {"attention_qk_norm": "qk_norm", "attention_use_flash_attn": "use_flash_attn"},
    "decoder_conf": {
        "self_attention_qk_norm": "qk_norm",
        "src_attention_qk_norm": "qk_norm",
        "self_attention_use_flash_attn": "use_flash_attn",
        "src_attention_use_flash_attn": "use_flash_attn",
    },
}


class PretrainedError(ValueError):
    """The pretrained model cannot be used; the message names the file, key or token."""


def fetch(src: PathLike, cache_dir: Optional[PathLike] = None, option: str = "--init_from") -> Path:
    """A local model directory, a packed model (``.zip`` of ``espnet_gated.bin.pack`` or ESPnet's
    pack, unpacked once next to it or under ``cache_dir``), or a hub name (``espnet/owsm_v3.1_ebf``)
    downloaded with huggingface_hub. ``option`` names the caller's option in error messages."""
    path = Path(src).expanduser()
    if path.is_dir():
        return path.resolve()
    name = str(src)
    if path.is_file() and is_archive(path):
        return unpack(path, cache_dir)
    if path.exists():
        raise PretrainedError(
            f"{path}: not a directory nor a packed model (.zip); {option} takes either, or a hub name"
        )
    if not HUB_NAME.match(name) or name.startswith((".", "/")):
        raise PretrainedError(f"{path}: no such model directory or file (nor a hub name like espnet/owsm_v3.1_ebf)")
    how = (
        f"download it where the hub is reachable (hf download {name} --local-dir DIR, or "
        f"git clone https://huggingface.co/{name} DIR), copy DIR here and pass it: {option} DIR"
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PretrainedError(
            f"'{name}' is not a local directory, and fetching it from the Hugging Face hub needs "
            f'huggingface_hub (pip install "espnet-gated[hub]", or pip install huggingface_hub); or {how}'
        ) from None
    logging.info(f"fetching {name} from the Hugging Face hub")
    try:
        return Path(snapshot_download(repo_id=name, cache_dir=None if cache_dir is None else str(cache_dir)))
    except Exception as e:  # offline, unreachable, unknown repository: the hub raises many types
        raise PretrainedError(
            f"'{name}' could not be fetched from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no message'}); if this machine is offline, {how}"
        ) from e


def read_yaml(path: PathLike) -> dict:
    """:func:`espnet_gated.configs.load_yaml`, a missing or malformed file a :class:`PretrainedError`."""
    try:
        return load_yaml(path)
    except (ConfigError, FileNotFoundError) as e:
        raise PretrainedError(str(e)) from None


def _meta_files(root: Path) -> Dict[str, Path]:
    """``s2t_train_config`` / ``s2t_model_file`` of an ESPnet-packed model's meta.yaml."""
    meta = root / "meta.yaml"
    if not meta.is_file():
        return {}
    data = read_yaml(meta)
    found = {}
    for section in ("yaml_files", "files"):
        for key, value in (data.get(section) or {}).items():
            if isinstance(value, str):
                for suffix in ("train_config", "model_file"):
                    if key.endswith(suffix) and (root / value).is_file():
                        found[suffix] = root / value
    return found


def _is_train_config(path: Path) -> bool:
    try:
        data = load_yaml(path)
    except ConfigError:
        return False
    return "encoder" in data and not data.get("collect_stats")


def _one(
    candidates: List[Path], root: Path, what: str, option: str, near: Optional[Path] = None, preferred: str = ""
) -> Path:
    candidates = list(dict.fromkeys(candidates))
    if len(candidates) > 1 and near is not None:
        close = [c for c in candidates if c.parent == near]
        candidates = close or candidates
    named = [c for c in candidates if c.name == preferred]
    if len(candidates) > 1 and len(named) == 1:
        logging.info(
            f"{root}: {len(candidates)} {what}s, using {named[0].relative_to(root)} (pass {option} for another)"
        )
        return named[0]
    if not candidates:
        raise PretrainedError(f"{root}: no {what} found; pass {option}")
    if len(candidates) > 1:
        listing = ", ".join(str(c.relative_to(root)) for c in candidates[:MAX_NAMED])
        raise PretrainedError(f"{root}: several {what}s ({listing}); choose one with {option}")
    return candidates[0]


def resolve_recorded(recorded: str, root: Path, config_file: Path, key: str) -> Path:
    """A path recorded in a config: relative to the model dir, else found in it by its longest
    matching suffix, else relative to the recipe dir of an ``exp/<name>[/<run>]`` dir, else as recorded."""
    rec = Path(recorded)
    if not rec.is_absolute() and (root / rec).is_file():
        return root / rec
    parts = rec.parts
    best, best_len = [], 0
    for candidate in root.rglob(rec.name):
        if not candidate.is_file():
            continue
        cparts = candidate.relative_to(root).parts
        n = 0
        while n < min(len(parts), len(cparts)) and parts[-1 - n] == cparts[-1 - n]:
            n += 1
        if n > best_len:
            best, best_len = [candidate], n
        elif n == best_len:
            best.append(candidate)
    if len(best) == 1:
        return best[0]
    if len(best) > 1:
        listing = ", ".join(str(c.relative_to(root)) for c in best[:MAX_NAMED])
        raise PretrainedError(f"{config_file}: {key} '{recorded}' matches several files under {root}: {listing}")
    if not rec.is_absolute():  # ESPnet's paths are relative to the recipe dir: the one above exp/<name> or
        # exp/<name>/<run> (stage 17's runs), else the current one
        for base in [*list(root.parents)[:3], Path.cwd()]:
            if (base / rec).is_file():
                return base / rec
    elif rec.is_file():
        return rec
    raise PretrainedError(f"{config_file}: {key} '{recorded}' not found, neither under {root} nor as recorded")


@dataclass
class Pretrained:
    """A located pretrained model directory."""

    root: Path
    config_file: Path
    model_file: Path
    config: dict
    token_list: List[str]
    bpemodel: Path
    stats_file: Optional[Path] = None
    fixes: List[str] = field(default_factory=list)  # dev-branch config keys mapped or dropped


def locate(root: PathLike, config_file: Optional[PathLike] = None, model_file: Optional[PathLike] = None) -> Pretrained:
    """Find the config, the weights, the token list and the BPE model of a model directory."""
    root = Path(root).resolve()
    meta = _meta_files(root)
    if config_file is not None:
        config_file = Path(config_file)
        if not config_file.is_file():
            raise PretrainedError(f"{config_file}: config not found")
    elif "train_config" in meta:
        config_file = meta["train_config"]
    elif (root / "config.yaml").is_file() and _is_train_config(root / "config.yaml"):
        config_file = root / "config.yaml"
    else:
        near = Path(model_file).resolve().parent if model_file else None
        configs = sorted(p for p in root.rglob("config.yaml") if _is_train_config(p))
        config_file = _one(configs, root, "training config.yaml", "--config", near)
    config_file = config_file.resolve()
    if model_file is not None:
        model_file = Path(model_file)
        if not model_file.is_file():
            raise PretrainedError(f"{model_file}: model file not found")
    elif "model_file" in meta:
        model_file = meta["model_file"]
    else:
        weights = sorted(p for p in root.rglob("*.pth") if p.name != "checkpoint.pth")
        model_file = _one(weights, root, "model .pth file", "--model_file", config_file.parent, INFERENCE_MODEL)
    model_file = model_file.resolve()

    config, fixes = map_dev_branch_keys(read_yaml(config_file), config_file)
    for note in fixes:
        logging.warning(f"{config_file}: {note}")
    for key in ("encoder", "decoder", "model"):
        name = config.get(key, "espnet" if key == "model" else None)
        if name not in GATED_NAMES[key]:
            supported = ", ".join(f"{k}: {' or '.join(v)}" for k, v in GATED_NAMES.items())
            raise PretrainedError(
                f"{config_file}: {key} '{name}' cannot be gated; --init_from supports OWSM v3.1-style models "
                f"({supported})"
            )
    if config.get("token_type", "bpe") != "bpe":
        raise PretrainedError(f"{config_file}: token_type '{config.get('token_type')}' (only bpe is supported)")

    token_list, bpemodel, stats_file = recorded_files(config, root, config_file)
    check_token_list(token_list, config_file)
    if bpemodel is None:
        raise PretrainedError(f"{config_file}: no bpemodel")
    check_conf_keys(config, config_file)
    return Pretrained(root, config_file, model_file, config, token_list, bpemodel, stats_file, fixes)


def recorded_files(config: dict, root: Path, config_file: Path) -> Tuple[List[str], Optional[Path], Optional[Path]]:
    """(token list, BPE model or None, statistics file or None) of a config, the files found as
    :func:`resolve_recorded` finds them."""
    recorded = config.get("token_list")
    if isinstance(recorded, list):
        token_list = [str(t) for t in recorded]
    elif isinstance(recorded, str):
        token_list = read_token_list(resolve_recorded(recorded, root, config_file, "token_list"))
    else:
        raise PretrainedError(f"{config_file}: no token_list")
    bpemodel = None
    if isinstance(config.get("bpemodel"), str):
        bpemodel = resolve_recorded(config["bpemodel"], root, config_file, "bpemodel")
    stats_file = None
    if config.get("normalize") == "global_mvn":
        recorded = (config.get("normalize_conf") or {}).get("stats_file")
        if not isinstance(recorded, str):
            raise PretrainedError(f"{config_file}: normalize global_mvn without normalize_conf.stats_file")
        stats_file = resolve_recorded(recorded, root, config_file, "normalize_conf.stats_file")
    return token_list, bpemodel, stats_file


def recorded_files_missing(config_file: PathLike) -> bool:
    """True if a file that ``config_file`` names (token list, BPE model, statistics) is not where
    it says, seen from the working directory (ESPnet's loaders read them from there)."""
    config = read_yaml(Path(config_file))
    recorded = [config.get("token_list"), config.get("bpemodel")]
    if config.get("normalize") == "global_mvn":
        recorded.append((config.get("normalize_conf") or {}).get("stats_file"))
    return any(isinstance(path, str) and not Path(path).is_file() for path in recorded)


def resolved_config(pre: Pretrained) -> dict:
    """``pre.config`` with the files it names as absolute paths (the token list inline), so that
    ESPnet's loader builds it from any working directory."""
    config = {**pre.config, "token_list": list(pre.token_list), "bpemodel": str(pre.bpemodel)}
    if pre.stats_file is not None:
        config["normalize_conf"] = {**(config.get("normalize_conf") or {}), "stats_file": str(pre.stats_file)}
    return config


@contextmanager
def resolved_config_file(pre: Pretrained) -> Iterator[Path]:
    """A temporary config.yaml of :func:`resolved_config` (ESPnet's loaders take a file)."""
    with tempfile.TemporaryDirectory(prefix="espnet_gated_config.") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(resolved_config(pre), sort_keys=False, allow_unicode=True), encoding="utf-8")
        yield path


def map_dev_branch_keys(config: dict, where: PathLike) -> Tuple[dict, List[str]]:
    """``config`` with the :data:`DEV_BRANCH_KEYS` renamed to ESPnet 202511's keys (or dropped
    where the 202511 key already says the same); returns (config, one note per key)."""
    config, notes = dict(config), []
    for section, mapping in DEV_BRANCH_KEYS.items():
        conf = config.get(section)
        if not isinstance(conf, dict) or not set(conf) & set(mapping):
            continue
        conf = dict(conf)
        wanted: Dict[str, List[Tuple[str, object]]] = {}
        for key in [k for k in conf if k in mapping]:
            wanted.setdefault(mapping[key], []).append((key, conf.pop(key)))
        for target, sources in wanted.items():
            values = {bool(v) for _, v in sources}
            named = ", ".join(f"{section}.{k}={v!r}" for k, v in sources)
            if len(values) > 1 and target == "qk_norm":  # changes the weights: no single 202511 value fits
                raise PretrainedError(f"{where}: {named} disagree; ESPnet 202511 has one {section}.qk_norm")
            value = any(values)  # use_flash_attn only chooses a kernel: on if any attention used it
            if target in conf and bool(conf[target]) != value and target == "qk_norm":
                raise PretrainedError(f"{where}: {named} contradicts {section}.{target}={conf[target]!r}")
            if target in conf:
                notes.append(f"dropped {named} (ESPnet's development branch; {section}.{target}={conf[target]!r} kept)")
            else:
                conf[target] = value
                notes.append(f"mapped {named} (ESPnet's development branch) to {section}.{target}={value!r}")
        config[section] = conf
    return config, notes


def _accepted_options(cls) -> set:
    """Keyword options of ``cls`` and of its bases as far as they pass ``**kwargs`` on."""
    names = set()
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {"self"}


def check_conf_keys(config: dict, where: PathLike) -> None:
    """Name the encoder/decoder options that ESPnet 202511's classes would reject with a TypeError."""
    from espnet2.tasks.s2t import decoder_choices, encoder_choices

    for key, choices in (("encoder", encoder_choices), ("decoder", decoder_choices)):
        unknown = sorted(set(config.get(f"{key}_conf") or {}) - _accepted_options(choices.get_class(config[key])))
        if unknown:
            raise PretrainedError(
                f"{where}: {key}_conf has options that {key} '{config[key]}' of ESPnet 202511 does not take: "
                f"{', '.join(unknown)}"
            )


def check_token_list(tokens: Sequence[str], where: PathLike) -> None:
    duplicates = sorted({t for t in tokens if tokens.count(t) > 1}) if len(set(tokens)) != len(tokens) else []
    if duplicates:
        raise PretrainedError(f"{where}: token list repeats {', '.join(duplicates[:MAX_NAMED])}")
    for required in ("<blank>", "<unk>", "<sos>", "<eos>", "<na>"):
        if required not in tokens:
            raise PretrainedError(f"{where}: token list lacks {required} (not an OWSM-style token list)")
