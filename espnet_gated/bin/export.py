#!/usr/bin/env python3
r"""Export a gated model with one fixed mask as a smaller, predictor-free model directory.

For a context-only gate predictor (``gate_conf: {use_audio: false}``) the mask of a
language-task pair is fixed, so the modules it closes can be dropped from the weights;
any model can also be exported with an explicit ``--mask``. The output directory holds
``config.yaml`` (ESPnet's plain ``model: espnet`` with ``encoder_conf.static_mask`` and
``decoder_conf.static_mask``), ``model.pth`` (no weights of closed modules, no gate
predictor), the files the model needs to decode, copied from the source model
(``tokens.txt``, ``bpe.model``, ``feats_stats.npz`` for global_mvn; config.yaml names them by
absolute path, as ESPnet's unpacked models do, and our loaders find them in the directory
if it is moved) and ``export.json`` (mask, sizes, source files). Decode it like the gated
model, with ``espnet_gated.bin.s2t_inference``, ``GatedSpeech2Text`` or
``GatedSpeech2Text.from_pretrained(out_dir)``: the hypotheses are those of the gated model
forced to the same mask.

Usage:
    # the mask the predictor picks for German ASR (context-only predictor)
    python -m espnet_gated.bin.export \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --lang_sym deu --task_sym asr --out exp/s2t/export_deu_asr

    # an explicit mask (layers separated by dots; bits: enc ffn_macaron/attn/cgmlp/ffn, dec self/src/ffn)
    python -m espnet_gated.bin.export \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --mask "enc=1111.1011.1111.1101 dec=111.101.011" --out exp/s2t/export_fixed

    python -m espnet_gated.bin.s2t_inference --model_tag exp/s2t/export_deu_asr --lang_sym deu --task_sym asr ...
"""

import argparse
import copy
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import yaml

from espnet_gated.cli import entry_point
from espnet_gated.configs import GATED_MODEL_KEYS
from espnet_gated.method.layout import format_side, parse_mask, parse_side
from espnet_gated.method.pruning import prune_decoder, prune_encoder
from espnet_gated.plugin.tasks import GatedS2TTask
from espnet_gated.plugin.weights import check_weights
from espnet_gated.sharing.pretrained import recorded_files
from espnet_gated.utils import atomic_output, atomic_write


def load_config(path) -> Dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return config


def save_model_dir(out_dir, config: Dict, state_dict: Dict[str, torch.Tensor], model_name: str = "model.pth"):
    """Write ``config.yaml`` and the weights atomically; returns (config path, model path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, model_path = out_dir / "config.yaml", out_dir / model_name
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    with atomic_output(model_path, "wb") as f:
        f.write(buffer.getvalue())
    atomic_write(config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return config_path, model_path


def copy_model_files(config: Dict, config_file, config_out: Dict, out_dir) -> Dict:
    """Copy the token list, the BPE model and the statistics file that ``config`` (of
    ``config_file``) names into ``out_dir``; returns ``config_out`` naming the copies."""
    token_list, bpemodel, stats_file = recorded_files(config, Path(config_file).resolve().parent, Path(config_file))
    out = Path(out_dir).resolve()
    atomic_write(out / "tokens.txt", "".join(f"{t}\n" for t in token_list))
    config_out = {**config_out, "token_list": str(out / "tokens.txt")}
    for source, name in ((bpemodel, "bpe.model"), (stats_file, "feats_stats.npz")):
        if source is not None and source.resolve() != (out / name).resolve():
            with atomic_output(out / name, "wb") as f, open(source, "rb") as src:
                shutil.copyfileobj(src, f)
    if bpemodel is not None:
        config_out["bpemodel"] = str(out / "bpe.model")
    if stats_file is not None:
        config_out["normalize_conf"] = {
            **(config_out.get("normalize_conf") or {}),
            "stats_file": str(out / "feats_stats.npz"),
        }
    return config_out


def build_from_config(config: Dict, device: str = "cpu"):
    return GatedS2TTask.build_model(argparse.Namespace(**copy.deepcopy(config))).to(device)


def exported_config(config: Dict, enc_mask: torch.Tensor, dec_mask: torch.Tensor) -> Dict:
    out = copy.deepcopy(config)
    out["model"] = "espnet"
    out["model_conf"] = {k: v for k, v in (out.get("model_conf") or {}).items() if k not in GATED_MODEL_KEYS}
    out["encoder_conf"] = {**(out.get("encoder_conf") or {}), "static_mask": format_side(enc_mask)}
    out["decoder_conf"] = {**(out.get("decoder_conf") or {}), "static_mask": format_side(dec_mask)}
    return out


def predicted_mask(model, lang_sym: str, task_sym: str, where: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
    """The mask a context-only gate predictor gives a language-task pair."""
    predictor = model.gate_predictor
    if predictor.use_audio:
        raise ValueError(
            f"{where}the gate predictor reads audio (gate_conf use_audio: true), so its mask changes per "
            "utterance: a static export needs a context-only predictor (use_audio: false) or an explicit --mask"
        )
    model.eval()
    with torch.no_grad():
        context = model.token_context(f"<{lang_sym.strip('<>')}>", f"<{task_sym.strip('<>')}>")
        slots = predictor.sample(predictor(None, context))
    layout = model.gate_layout
    return layout.to_dense(slots, "enc")[0].cpu(), layout.to_dense(slots, "dec")[0].cpu()


def n_params(state_dict: Dict[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for v in state_dict.values() if v.is_floating_point()))


def export(
    config_file,
    model_file,
    out_dir,
    mask: Optional[str] = None,
    lang_sym: Optional[str] = None,
    task_sym: Optional[str] = None,
) -> Dict:
    """Write the exported model directory; returns the summary written to ``export.json``."""
    config = load_config(config_file)
    if config.get("model") != "gated_espnet":
        raise ValueError(f"{config_file}: model is '{config.get('model')}', export needs a gated model (gated_espnet)")
    if model_file is not None and not Path(model_file).is_file():
        raise FileNotFoundError(f"model file not found: {model_file}")
    model = build_from_config(config)
    if model_file is not None:
        check_weights(model, model_file, config_file)  # loads them
    model.eval()
    gated_state = {k: v.clone() for k, v in model.state_dict().items()}
    if mask is not None:
        if lang_sym or task_sym:
            raise ValueError("give either --mask or --lang_sym/--task_sym, not both")
        parsed = parse_mask(mask)
        layout = model.gate_layout
        enc_mask = parse_side("enc", parsed["enc"], layout.n_layers["enc"])
        dec_mask = parse_side("dec", parsed["dec"], layout.n_layers["dec"])
    elif lang_sym and task_sym:
        enc_mask, dec_mask = predicted_mask(model, lang_sym, task_sym, where=f"{config_file}: ")
    else:
        raise ValueError("export needs --mask, or --lang_sym and --task_sym (context-only gate predictor)")
    prune_encoder(model.encoder, enc_mask)
    prune_decoder(model.decoder, dec_mask)
    pruned_state = model.state_dict()
    config_out = exported_config(config, enc_mask, dec_mask)
    exported = build_from_config(config_out).eval()
    want = set(exported.state_dict())
    missing = sorted(want - set(pruned_state))
    if missing:
        raise RuntimeError(f"exported model needs weights the pruned gated model lacks: {missing[:5]}")
    state = {k: pruned_state[k].detach().clone().contiguous() for k in exported.state_dict()}
    exported.load_state_dict(state, strict=True)
    config_out = copy_model_files(config, config_file, config_out, out_dir)
    config_path, model_path = save_model_dir(out_dir, config_out, exported.state_dict())
    summary = {
        "source_config": str(config_file),
        "source_model": None if model_file is None else str(model_file),
        "lang_sym": lang_sym,
        "task_sym": task_sym,
        "mask": f"enc={format_side(enc_mask)} dec={format_side(dec_mask)}",
        "closed": {"enc": int((enc_mask < 0.5).sum()), "dec": int((dec_mask < 0.5).sum())},
        "params": {"gated": n_params(gated_state), "exported": n_params(state)},
        "bytes": {"exported_model_file": model_path.stat().st_size},
        "dropped_keys": sorted(set(gated_state) - set(state)),
        "config": str(config_path),
        "model_file": str(model_path),
    }
    if model_file is not None:
        summary["bytes"]["gated_model_file"] = Path(model_file).stat().st_size
    atomic_write(Path(out_dir) / "export.json", json.dumps(summary, indent=2))
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a gated model with a fixed mask (closed modules and gate predictor removed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage:", 1)[1],
    )
    parser.add_argument("--s2t_train_config", required=True, help="config.yaml of the gated model")
    parser.add_argument("--s2t_model_file", default=None, help="its weights (.pth)")
    parser.add_argument("--lang_sym", default=None, help="language of the mask (e.g. deu), context-only predictor")
    parser.add_argument("--task_sym", default=None, help="task of the mask (e.g. asr)")
    parser.add_argument("--mask", default=None, help='explicit mask, e.g. "enc=1111.1011 dec=111.101"')
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--log_level", default="INFO")
    return parser


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    summary = export(args.s2t_train_config, args.s2t_model_file, args.out, args.mask, args.lang_sym, args.task_sym)
    p = summary["params"]
    logging.info(
        f"exported {summary['mask']} to {args.out}: {p['exported']:,} parameters "
        f"(gated model {p['gated']:,}, -{100 * (1 - p['exported'] / p['gated']):.1f}%), "
        f"{summary['bytes']['exported_model_file']:,} bytes"
    )


if __name__ == "__main__":
    main()
