"""Packing a trained gated model as one file with its model card.

A pack is a zip in ESPnet's packed layout (what ``espnet2.bin.pack s2t`` writes, so ESPnet's own
``espnet2.main_funcs.pack_funcs.unpack`` and the hub's ESPnet repositories look the same)::

    meta.yaml                              files: {s2t_model_file: ...}, yaml_files: {s2t_train_config: ...}
    exp/<tag>/config.yaml                  paths in it are relative to the pack's root
    exp/<tag>/valid.acc.ave.pth            the model file
    exp/<tag>/feats_stats.npz              where the model normalizes with global_mvn
    exp/<tag>/results/                     RESULTS.md, scores.json, usage.tsv, usage_<lang>_<task>.png, ...
    data/token_list/bpe.model, tokens.txt  the sentencepiece model and the token list
    README.md                              the model card (the hub shows it)

Reading a pack and uploading it to the Hugging Face hub is :mod:`espnet_gated.sharing.archive`'s job;
``GatedSpeech2Text.from_pretrained``, ``s2t_inference --model_tag`` and ``init_from`` load the zip, its
unpacked directory or a hub snapshot of it alike (:func:`espnet_gated.sharing.locate.locate`).

Usage::

    from espnet_gated.sharing.archive import upload
    from espnet_gated.sharing.pack import pack

    zip_path = pack("exp/s2t_train/config.yaml", "exp/s2t_train/valid.acc.ave.pth", "exp/s2t_train/model.zip",
                    results_dir="exp/s2t_train/results")
    upload(zip_path, "user/gated-owsm", "exp/hf_user_gated-owsm")    # unpacked there, then uploaded
"""

import json
import logging
import platform
import re
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import yaml

from espnet_gated.data.symbols import token_kind
from espnet_gated.plugin.weights import WeightsError, read_state_dict
from espnet_gated.sharing.archive import PackError, is_archive
from espnet_gated.sharing.locate import PretrainedError, locate
from espnet_gated.sharing.model_dir import n_params
from espnet_gated.utils import PathLike, atomic_output

#: ESPnet's names of the S2T model's files in meta.yaml (espnet2/bin/pack.py, S2TPackedContents)
MODEL_KEY, CONFIG_KEY = "s2t_model_file", "s2t_train_config"
TOKEN_DIR = "data/token_list"
#: files that are stored, not deflated (they do not compress)
STORED_SUFFIXES = (".pth", ".png", ".npz", ".model")


# ---------------------------------------------------------------- model card
def _score_rows(scores: Sequence[dict]) -> List[str]:
    rows = ["| test set | language | task | metric | value | utterances |", "|---|---|---|---|---|---|"]
    for r in scores:
        rows.append(
            f"| {r['test_set']} | {r['lang']} | {r['task']} | {r['metric']} | {r['value']:.1f} | {r['n_utts']} |"
        )
    return rows


def _demoted(markdown: str) -> str:
    """Headings one level down, so that an embedded report sits under the card's own heading."""
    return "\n".join(f"#{line}" if line.startswith("#") else line for line in markdown.splitlines())


#: a markdown link or image whose target is a relative path: ``](usage_deu_asr.png)``
RELATIVE_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s]+)\)")


def _rebased(markdown: str, prefix: str) -> str:
    """Relative link targets of a report in ``prefix`` made relative to the pack's root."""
    return RELATIVE_LINK.sub(lambda m: f"]({prefix}/{m.group(1)})", markdown)


def model_card(
    config: dict,
    tag: str,
    load_name: str,
    scores: Sequence[dict] = (),
    results_md: Optional[str] = None,
    usage_images: Sequence[str] = (),
    languages: Sequence[str] = (),
    n_params: Optional[int] = None,
) -> str:
    """The README.md of a pack: what the model is, its scores (from ``scores.json``, then the
    recipe's ``RESULTS.md`` as it is, its links made relative to the pack's root), its module
    usage heatmaps (those RESULTS.md does not show) and how to use it."""
    enc, dec = config.get("encoder_conf") or {}, config.get("decoder_conf") or {}
    model_conf = config.get("model_conf") or {}
    gate, sparsity = model_conf.get("gate_conf") or {}, model_conf.get("sparsity_conf") or {}
    tested = sorted({(r["lang"], r["task"]) for r in scores if r["lang"] != "all"})
    lang, task = tested[0] if tested else ((languages[0].strip("<>") if languages else "eng"), "asr")
    front = {
        "library_name": "espnet",
        "license": "cc-by-4.0",
        "tags": ["espnet", "espnet-gated", "audio", "automatic-speech-recognition", "speech-translation"],
    }
    if languages:
        front["language"] = [t.strip("<>") for t in languages]
    size = f"{n_params / 1e6:.1f}M parameters, " if n_params else ""
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {tag}: a gated OWSM-style speech-to-text model (espnet-gated)",
        "",
        f"{size}{config.get('encoder')} encoder ({enc.get('num_blocks')} layers, d={enc.get('output_size')}, "
        f"{enc.get('input_layer')} input) and {config.get('decoder')} decoder ({dec.get('num_blocks')} layers). "
        "A gate predictor switches the encoder's and decoder's modules on or off per utterance from its "
        "language, task and audio (Context-aware Dynamic Pruning for Speech Foundation Models, ICLR 2025); "
        "a closed module is not computed. "
        f"Gate predictor: audio {'on' if gate.get('use_audio', True) else 'off'}; sparsity targets: encoder "
        f"{sparsity.get('encoder_target')}, decoder {sparsity.get('decoder_target')}.",
        "",
        "## Use",
        "",
        '```bash\npip install "espnet-gated[hub]"   # the espnet-gated repository: pip install -e ".[hub]"\n```',
        "",
        "```python",
        "import soundfile",
        "from espnet_gated.decoding.inference import GatedSpeech2Text",
        "",
        f'speech2text = GatedSpeech2Text.from_pretrained("{load_name}", beam_size=5)',
        'speech, rate = soundfile.read("speech.wav")  # 16 kHz mono',
        f'text, *_ = speech2text(speech, lang_sym="<{lang}>", task_sym="<{task}>")[0]',
        'decoding = speech2text.decode(speech, lang_sym="none", task_sym="<asr>")  # language identified first',
        "print(decoding.nbests[0][0][0], decoding.langs[0], decoding.masks[0])  # text, language, gate mask",
        "```",
        "",
        "Command line (a whole wav.scp; `--lang_sym none` identifies each utterance's language and writes "
        "it to `1best_recog/lang`):",
        "",
        "```bash",
        f"python -m espnet_gated.bin.s2t_inference --model_tag {load_name} \\",
        "    --data_path_and_name_and_type wav.scp,speech,sound \\",
        f"    --lang_sym {lang} --task_sym {task} --output_dir decode_{lang}_{task}",
        "```",
        "",
        "## Results",
        "",
    ]
    if scores:
        lines += [
            "Per test set (`exp/*/results/scores.json`; WER/CER and BLEU/chrF in %):",
            "",
            *_score_rows(scores),
            "",
        ]
    else:
        lines += ["No scores: the model was packed before it was scored (stage 13).", ""]
    if results_md:
        lines += ["### The recipe's report (RESULTS.md)", "", _demoted(results_md.strip()), ""]
    usage_images = [image for image in usage_images if f"]({image})" not in "\n".join(lines)]
    if usage_images:
        lines += [
            "## Module usage",
            "",
            "How often each module is kept per layer (1 = always), per language and task:",
            "",
        ]
        lines += [f"![{Path(image).stem}]({image})" for image in usage_images]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- pack
def _versions() -> Dict[str, str]:
    import espnet
    import torch

    from espnet_gated import __version__ as gated_version

    return {"python": platform.python_version(), "torch": str(torch.__version__), "espnet": espnet.__version__,
            "espnet_gated": gated_version}  # fmt: skip


def pack(
    config_file: PathLike,
    model_file: PathLike,
    out: PathLike,
    results_dir: Optional[PathLike] = None,
    hf_repo: Optional[str] = None,
) -> Path:
    """Write the pack of a trained model (``config.yaml`` of its training run) to ``out`` (.zip).

    The token list, BPE model and statistics file are the ones the config names (found as
    :func:`espnet_gated.sharing.locate.locate` finds them); ``results_dir`` (stage 13's output) gives the
    scores and the usage heatmaps of the model card. ``hf_repo`` is the name the card's usage
    snippet loads (default: the zip's file name)."""
    config_file, model_file, out = Path(config_file), Path(model_file), Path(out)
    if not is_archive(out):
        raise PackError(f"{out}: a pack is a .zip file")
    try:
        pre = locate(config_file.parent, config_file=config_file, model_file=model_file)
    except PretrainedError as e:
        raise PackError(str(e)) from None
    tag = config_file.resolve().parent.name
    exp = f"exp/{tag}"
    members: Dict[str, Union[Path, bytes]] = {
        f"{exp}/{model_file.name}": model_file.resolve(),
        f"{TOKEN_DIR}/bpe.model": pre.bpemodel,
        f"{TOKEN_DIR}/tokens.txt": "".join(f"{t}\n" for t in pre.token_list).encode(),
    }
    config = dict(pre.config, bpemodel=f"{TOKEN_DIR}/bpe.model", token_list=f"{TOKEN_DIR}/tokens.txt")
    if pre.stats_file is not None:
        members[f"{exp}/feats_stats.npz"] = pre.stats_file
        config["normalize_conf"] = {**(config.get("normalize_conf") or {}), "stats_file": f"{exp}/feats_stats.npz"}
    members[f"{exp}/config.yaml"] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode()

    scores, results_md, images = [], None, []
    if results_dir is not None and Path(results_dir).is_dir():
        results_dir = Path(results_dir)
        for f in sorted(p for p in results_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            members[f"{exp}/results/{f.name}"] = f
        if (results_dir / "scores.json").is_file():
            try:
                scores = json.loads((results_dir / "scores.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise PackError(f"{results_dir / 'scores.json'}: not JSON ({e})") from None
        if (results_dir / "RESULTS.md").is_file():
            results_md = _rebased((results_dir / "RESULTS.md").read_text(encoding="utf-8"), f"{exp}/results")
        images = [f"{exp}/results/{p.name}" for p in sorted(results_dir.glob("usage_*_*.png"))]
    else:
        logging.warning(f"{results_dir or 'no results dir'}: no scores to put on the model card (run stage 13 first)")
    languages = [t for t in pre.token_list if token_kind(t) == "lang"]
    card = model_card(config, tag, hf_repo or out.name, scores, results_md, images, languages, _n_params(model_file))
    members["README.md"] = card.encode()
    meta = {"files": {MODEL_KEY: f"{exp}/{model_file.name}"}, "yaml_files": {CONFIG_KEY: f"{exp}/config.yaml"},
            "timestamp": time.time(), **_versions()}  # fmt: skip
    with atomic_output(out, "wb") as f, zipfile.ZipFile(f, "w") as archive:
        archive.writestr("meta.yaml", yaml.safe_dump(meta, sort_keys=False), zipfile.ZIP_DEFLATED)
        for name, source in members.items():
            kind = zipfile.ZIP_STORED if name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            if isinstance(source, bytes):
                archive.writestr(name, source, kind)
            else:
                archive.write(source, name, kind)
    logging.info(f"packed {len(members) + 1} files into {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


def _n_params(model_file: Path) -> Optional[int]:
    try:
        return n_params(read_state_dict(model_file))
    except WeightsError:  # not a plain state dict: the card leaves the size out
        return None
