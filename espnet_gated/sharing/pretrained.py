"""Start a gated model from a pretrained dense OWSM model (``--init_from``).

:func:`init_from` takes an ESPnet S2T model directory (as packed by ESPnet, downloaded from the
Hugging Face hub, or an ESPnet ``exp/`` tree), a packed model (``.zip``, :mod:`espnet_gated.sharing.pack`)
or a hub name such as ``espnet/owsm_v3.1_ebf`` and writes, under ``out``:

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
  them through ``--token_list_dir``), and ``feats_stats.npz`` where the model uses ``global_mvn``;
* ``init_from.yaml``: where everything came from (written last), and ``config_fixes``: the keys of
  ESPnet's development branch that some OWSM hub configs carry (ESPnet issue #5973:
  ``attention_qk_norm``, ``self_attention_use_flash_attn``, ...), which ESPnet 202511 rejects; they
  are mapped to 202511's ``qk_norm``/``use_flash_attn`` or dropped (:data:`DEV_BRANCH_KEYS`), each
  one logged. Any other encoder/decoder option that 202511 does not take is an error naming it.

``num_att_plot`` comes from the pretrained config unless the recipe config sets it (OWSM: 0).
OWSM v4 (``conv2d8`` subsampling, 128 mel bins) loads like v3.1: the architecture is read from
its config. :func:`locate` finds the files of a model directory for ``init_from``,
``GatedSpeech2Text.from_pretrained`` and ``espnet_gated.sharing.pack`` alike.

Paths recorded in the pretrained config (``bpemodel``, ``token_list``, ``normalize_conf.stats_file``)
are resolved relative to the model directory first; if they do not exist there the directory is
searched for the file (the longest matching path suffix wins).

New languages and tasks (``add_langs``, ``add_tasks``): the token is inserted into the token list's
block of language (``<abk>`` .. ``<zul>`` in OWSM) or task (``<asr>``, ``<st_*>``) tokens at its
alphabetical place, as OWSM keeps them, so that ESPnet's language identification
(``s2t_inference_language``, which scores the range ``--first_lang_sym`` .. ``--last_lang_sym``)
still covers every language; a code sorting before the first or after the last language extends
the block at that end (then pass the new first/last symbol to it). ``<sos>``, ``<eos>`` and ``<sop>``
stay last. The sentencepiece model gains the token as a user-defined symbol. The rows of the
decoder embedding, the output layer and the CTC layer (and of the gate predictor's context
embeddings, for a gated source) are re-indexed by token, so every old token keeps its weights and
its output; a new token's rows are the mean of the rows of its kind (languages or tasks), or a copy
of a given token's rows (``xyz=deu``).

Usage (see ``espnet_gated/bin/init_from.py`` for the command line)::

    from espnet_gated.sharing.pretrained import init_from
    init_from("espnet/owsm_v3.1_ebf", "exp/init_owsm", train_config="conf/train.yaml", add_langs=["xyz"])
"""

import argparse
import inspect
import logging
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import yaml

from espnet_gated.configs import deep_merge
from espnet_gated.data.langs import to_iso3
from espnet_gated.data.symbols import CONTEXT_TOKEN, TASK, token_kind
from espnet_gated.plugin.tasks import GatedS2TTask, preprocessor_defaults, read_token_list
from espnet_gated.plugin.weights import WeightsError, load_checked, read_state_dict
from espnet_gated.utils import PathLike, atomic_output, atomic_write

#: dense -> gated class names
GATED_NAMES = {
    "encoder": {"e_branchformer": "gated_e_branchformer", "gated_e_branchformer": "gated_e_branchformer"},
    "decoder": {"transformer": "gated_transformer", "gated_transformer": "gated_transformer"},
    "model": {"espnet": "gated_espnet", "gated_espnet": "gated_espnet"},
}
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
#: parameters with one row per token
VOCAB_PARAMS = (
    "decoder.embed.0.weight",
    "decoder.output_layer.weight",
    "decoder.output_layer.bias",
    "ctc.ctc_lo.weight",
    "ctc.ctc_lo.bias",
)
#: gate predictor parameters with one row per context token (plus row 0), for gated sources
CONTEXT_PARAMS = ("gate_predictor.lang_embed.weight", "gate_predictor.task_embed.weight")
#: per context row, the training utterances the gate predictor saw (a new token without a template: none)
CONTEXT_COUNTS = "gate_predictor.context_counts"
GATE_PREFIX = "gate_predictor."
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_NAMED = 20
#: the checkpoint a recipe decodes (s2t.sh --inference_model): chosen when a directory holds several
INFERENCE_MODEL = "valid.acc.ave.pth"
#: training options carried over from the pretrained config unless the recipe config sets them
#: (OWSM sets num_att_plot: 0; ESPnet's default of 3 costs ~40 s of attention plots per epoch on a CPU)
CARRIED_KEYS = ("num_att_plot",)
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


# ---------------------------------------------------------------- finding the model
def fetch(src: PathLike, cache_dir: Optional[PathLike] = None, option: str = "--init_from") -> Path:
    """A local model directory, a packed model (``.zip`` of ``espnet_gated.bin.pack`` or ESPnet's
    pack, unpacked once next to it or under ``cache_dir``), or a hub name (``espnet/owsm_v3.1_ebf``)
    downloaded with huggingface_hub. ``option`` names the caller's option in error messages."""
    from espnet_gated.sharing.pack import is_archive, unpack

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


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PretrainedError(f"{path}: unreadable YAML ({e})") from None
    if not isinstance(data, dict):
        raise PretrainedError(f"{path}: not a YAML mapping")
    return data


def _meta_files(root: Path) -> Dict[str, Path]:
    """``s2t_train_config`` / ``s2t_model_file`` of an ESPnet-packed model's meta.yaml."""
    meta = root / "meta.yaml"
    if not meta.is_file():
        return {}
    data = _load_yaml(meta)
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "encoder" in data and not data.get("collect_stats")


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
    matching suffix, else relative to the recipe dir of an ``exp/<name>`` dir, else as recorded."""
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
    if not rec.is_absolute():  # an ESPnet exp/<name> dir: paths are relative to the recipe dir above it
        for ancestor in list(root.parents)[:2]:
            if (ancestor / rec).is_file():
                return ancestor / rec
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

    config, fixes = map_dev_branch_keys(_load_yaml(config_file), config_file)
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
    config = _load_yaml(Path(config_file))
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


# ---------------------------------------------------------------- new tokens
def _code(code: str) -> str:
    code = code.strip().strip("<>").lower()
    if re.fullmatch(r"[a-z]{3}", code):
        return code
    try:
        return to_iso3(code)
    except ValueError as e:
        raise PretrainedError(f"language '{code}': {e} (a new language needs an ISO-639-3 code like xyz)") from None


def parse_new_tokens(langs: Iterable[str] = (), tasks: Iterable[str] = ()) -> List[Tuple[str, str, Optional[str]]]:
    """``xyz`` or ``xyz=deu`` (languages) and ``st_xyz`` or ``st_xyz=st_deu`` (tasks) ->
    (kind, token, template token or None)."""
    out = []
    for kind, items in (("lang", langs), ("task", tasks)):
        for item in items:
            if not item.strip():
                continue
            name, _, template = item.partition("=")
            if kind == "lang":
                token, tmpl = f"<{_code(name)}>", template and f"<{_code(template)}>"
            else:
                name, template = name.strip().strip("<>").lower(), template.strip().strip("<>").lower()
                if name.startswith("st_"):
                    name = f"st_{_code(name[3:])}"
                if not TASK.match(name):
                    raise PretrainedError(f"task '{name}': expected asr or st_<lang> like st_xyz")
                token, tmpl = f"<{name}>", template and f"<{template}>"
            out.append((kind, token, tmpl or None))
    return out


def _longest_run(indices: List[int]) -> List[int]:
    """The longest run of consecutive indices (the block; a stray look-alike piece elsewhere is not in it)."""
    runs: List[List[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return max(runs, key=len) if runs else []


def insert_tokens(tokens: Sequence[str], new: Sequence[Tuple[str, str, Optional[str]]]) -> Tuple[List[str], List[str]]:
    """The token list with the new tokens in their blocks (see the module docstring); returns
    (new list, tokens actually added). Tokens already present are left where they are."""
    out = list(tokens)
    added = []
    for kind, token, _ in sorted(new, key=lambda x: x[1]):
        if token in out:
            logging.info(f"{token} is already in the token list")
            continue
        block = _longest_run([i for i, t in enumerate(out) if token_kind(t) == kind])
        if not block:
            raise PretrainedError(f"cannot add {token}: the token list has no {kind} tokens (not OWSM-style)")
        after = [i for i in block if out[i] > token]
        out.insert(after[0] if after else block[-1] + 1, token)
        added.append(token)
    for tail in ("<sos>", "<eos>", "<sop>"):
        if tail in out and any(token_kind(t) for t in out[out.index(tail) :]):
            raise PretrainedError(f"the token list has language/task tokens after {tail}")
    return out, added


def extend_bpemodel(src: Path, dst: Path, tokens: Sequence[str]) -> None:
    """Copy the sentencepiece model, adding ``tokens`` as user-defined symbols."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(src.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise PretrainedError(f"{src}: not a sentencepiece model ({e})") from None
    if not tokens:
        with atomic_output(dst, "wb") as f:
            f.write(src.read_bytes())
        return
    pieces = {p.piece: p for p in proto.pieces}
    for token in tokens:
        if token in pieces:
            if pieces[token].type != sp_pb2.ModelProto.SentencePiece.USER_DEFINED:
                raise PretrainedError(f"{src}: has {token} as an ordinary piece, not as a user-defined symbol")
            continue
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, 0.0, sp_pb2.ModelProto.SentencePiece.USER_DEFINED
        proto.trainer_spec.user_defined_symbols.append(token)
    data = proto.SerializeToString()
    sp = spm.SentencePieceProcessor(model_proto=data)
    for token in tokens:
        pieces = sp.encode_as_pieces(f"{token}<notimestamps> x")
        if token not in pieces:
            raise PretrainedError(f"{src}: {token} does not encode as one piece after adding it ({pieces})")
    with atomic_output(dst, "wb") as f:
        f.write(data)


def _new_row(rows: torch.Tensor, old_index: Dict[str, int], kind: str, template: Optional[str]) -> torch.Tensor:
    if template is not None:
        if template not in old_index:
            raise PretrainedError(f"template token {template} is not in the pretrained token list")
        return rows[old_index[template]]
    same = [i for t, i in old_index.items() if token_kind(t) == kind]
    return rows[same].float().mean(0).to(rows.dtype)


def remap_rows(
    state: Dict[str, torch.Tensor],
    old: Sequence[str],
    new: Sequence[str],
    templates: Dict[str, Optional[str]],
) -> Dict[str, torch.Tensor]:
    """Re-index the per-token rows of ``state`` from token list ``old`` to ``new`` (a superset)."""
    state = dict(state)
    kinds = {t: token_kind(t) for t in new}

    def remap(key: str, old_tokens: Sequence[str], new_tokens: Sequence[str], offset: int) -> None:
        rows = state[key]
        unseen = torch.zeros_like(rows[0])
        if rows.size(0) != len(old_tokens) + offset:
            raise PretrainedError(
                f"{key}: {rows.size(0)} rows, the pretrained token list implies {len(old_tokens) + offset}"
            )
        index = {t: i + offset for i, t in enumerate(old_tokens)}
        parts = [rows[:offset]]
        for t in new_tokens:
            if t in index:
                row = rows[index[t]]
            elif key == CONTEXT_COUNTS and templates.get(t) is None:
                row = unseen
            else:
                row = _new_row(rows, index, kinds[t], templates.get(t))
            parts.append(row[None])
        state[key] = torch.cat(parts, 0).contiguous()

    for key in VOCAB_PARAMS:
        if key in state:
            remap(key, old, new, 0)
    old_ctx = [t for t in old if CONTEXT_TOKEN.match(t)]
    new_ctx = [t for t in new if CONTEXT_TOKEN.match(t)]
    for key in (*CONTEXT_PARAMS, CONTEXT_COUNTS):
        if key in state:
            remap(key, old_ctx, new_ctx, 1)
    return state


# ---------------------------------------------------------------- configs and weights
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
        recipe = _load_yaml(Path(train_config))

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
