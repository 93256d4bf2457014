"""A model directory as ESPnet's loaders read it: ``config.yaml``, the weights, and the files the config names.

Written by the static export (:mod:`espnet_gated.sharing.export`) and the benchmark; the config names its
token list, BPE model and statistics file by absolute path, as ESPnet's unpacked models do, and
:func:`espnet_gated.sharing.locate.locate` finds them in the directory if it is moved.
"""

import argparse
import copy
import io
import shutil
from pathlib import Path
from typing import Dict, Tuple

import torch
import yaml

from espnet_gated.plugin.tasks import GatedS2TTask
from espnet_gated.sharing.locate import recorded_files
from espnet_gated.utils import PathLike, atomic_output, atomic_write


def save_model_dir(
    out_dir: PathLike, config: Dict, state_dict: Dict[str, torch.Tensor], model_name: str = "model.pth"
) -> Tuple[Path, Path]:
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


def copy_model_files(config: Dict, config_file: PathLike, config_out: Dict, out_dir: PathLike) -> Dict:
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


def build_from_config(config: Dict, device: str = "cpu") -> torch.nn.Module:
    """The model of a complete ESPnet config (gated, or ESPnet's own S2T model), freshly initialised."""
    return GatedS2TTask.build_model(argparse.Namespace(**copy.deepcopy(config))).to(device)


def n_params(state_dict: Dict[str, torch.Tensor]) -> int:
    """The number of parameters of a state dict (floating-point tensors; integer buffers are counters)."""
    return int(sum(v.numel() for v in state_dict.values() if v.is_floating_point()))
