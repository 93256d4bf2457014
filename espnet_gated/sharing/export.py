"""Static export: a gated model with one fixed mask as a smaller, predictor-free model directory.

For a context-only gate predictor (``gate_conf: {use_audio: false}``) the mask of a language-task pair is
fixed, so the modules it closes can be dropped from the weights; any model can also be exported with an
explicit mask. The output directory (:mod:`espnet_gated.sharing.model_dir`) holds ``config.yaml`` (ESPnet's
plain ``model: espnet`` with ``encoder_conf.static_mask`` and ``decoder_conf.static_mask``), ``model.pth``
(no weights of closed modules, no gate predictor), the token list, BPE model and statistics file of the
source model, and ``export.json`` (mask, sizes, source files). It decodes like the gated model forced to
the same mask. The command line is ``espnet_gated.bin.export``.
"""

import copy
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from espnet_gated.configs import GATED_MODEL_KEYS, load_yaml
from espnet_gated.method.layout import format_mask, format_side, parse_mask, parse_side
from espnet_gated.method.pruning import prune_decoder, prune_encoder
from espnet_gated.plugin.weights import check_weights
from espnet_gated.sharing.model_dir import build_from_config, copy_model_files, n_params, save_model_dir
from espnet_gated.utils import PathLike, atomic_write


def exported_config(config: Dict, enc_mask: torch.Tensor, dec_mask: torch.Tensor) -> Dict:
    """ESPnet's plain S2T model of ``config``'s dimensions, the mask fixed in its encoder and decoder."""
    out = copy.deepcopy(config)
    out["model"] = "espnet"
    out["model_conf"] = {k: v for k, v in (out.get("model_conf") or {}).items() if k not in GATED_MODEL_KEYS}
    out["encoder_conf"] = {**(out.get("encoder_conf") or {}), "static_mask": format_side(enc_mask)}
    out["decoder_conf"] = {**(out.get("decoder_conf") or {}), "static_mask": format_side(dec_mask)}
    return out


def predicted_mask(
    model, lang_sym: str, task_sym: str, where: str = "", sparsity=None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The mask a context-only gate predictor gives a language-task pair (a budgeted one at ``sparsity``, else at
    its default budget)."""
    predictor = model.gate_predictor
    if predictor.use_audio:
        raise ValueError(
            f"{where}the gate predictor reads audio (gate_conf use_audio: true), so its mask changes per "
            "utterance: a static export needs a context-only predictor (use_audio: false) or an explicit --mask"
        )
    model.eval()
    with torch.no_grad():
        context = model.token_context(f"<{lang_sym.strip('<>')}>", f"<{task_sym.strip('<>')}>")
        controller = model.sparsity_controller
        budget = controller.decode_budgets(sparsity)
        budgets = None if budget is None else controller.budget_tensor(budget, 1)
        slots = predictor.sample(predictor(None, context, budget=budgets))
    layout = model.gate_layout
    return layout.to_dense(slots, "enc")[0].cpu(), layout.to_dense(slots, "dec")[0].cpu()


def export(
    config_file: PathLike,
    model_file: Optional[PathLike],
    out_dir: PathLike,
    mask: Optional[str] = None,
    lang_sym: Optional[str] = None,
    task_sym: Optional[str] = None,
    sparsity=None,
) -> Dict:
    """Write the exported model directory; returns the summary written to ``export.json``. ``sparsity``: the
    budget of a budgeted context-only predictor's mask."""
    config = load_yaml(config_file)
    if config.get("model") != "gated_espnet":
        raise ValueError(f"{config_file}: model is '{config.get('model')}', export needs a gated model (gated_espnet)")
    if model_file is not None and not Path(model_file).is_file():
        raise FileNotFoundError(f"model file not found: {model_file}")
    model = build_from_config(config)
    if model_file is not None:
        check_weights(model, model_file, config_file)
    model.eval()
    gated_state = {k: v.clone() for k, v in model.state_dict().items()}
    if mask is not None:
        if lang_sym or task_sym:
            raise ValueError("give either --mask or --lang_sym/--task_sym, not both")
        if sparsity is not None:
            raise ValueError("--sparsity chooses a predicted mask (--lang_sym/--task_sym); --mask is the mask itself")
        parsed = parse_mask(mask)
        layout = model.gate_layout
        enc_mask = parse_side("enc", parsed["enc"], layout.n_layers["enc"])
        dec_mask = parse_side("dec", parsed["dec"], layout.n_layers["dec"])
    elif lang_sym and task_sym:
        enc_mask, dec_mask = predicted_mask(model, lang_sym, task_sym, f"{config_file}: ", sparsity)
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
        "sparsity": sparsity,
        "mask": format_mask(enc_mask, dec_mask),
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
