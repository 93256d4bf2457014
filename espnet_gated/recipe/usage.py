"""Which modules the gates kept at inference, and the compute that cost.

Reads the ``gates`` files of a decode (``<utt> enc=1111.1011 dec=111.101``, see
:func:`espnet_gated.method.layout.format_mask`), pools them per language and task into keep
rates (``usage.tsv``, heatmaps), and prices each utterance with the analytic cost model
of :mod:`espnet_gated.method.flops`: its encoder frames follow from its sample count through the
frontend's STFT and the encoder's subsampling convolutions, its decoder steps from its
hypothesis, and its beam from the decoding config. The dense reference is the same model
with every module open, decoded the same way, so the ratio isolates what gating saves.
"""

import argparse
import csv
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from espnet_gated.configs import load_yaml
from espnet_gated.method.flops import decode_macs, encoder_macs
from espnet_gated.method.layout import MODULES, parse_mask
from espnet_gated.utils import PathLike, atomic_output, read_kaldi_map

Mask = Dict[str, List[List[int]]]  # side -> layers x modules, 1 = executed
USAGE_COLUMNS = ("lang", "task", "side", "layer", "module", "keep_rate", "n_utts")
SIDES = ("enc", "dec")


def read_gates(path: PathLike) -> Dict[str, Mask]:
    """``gates`` file -> {utt: mask}; all masks must have the first one's layer counts."""
    masks: Dict[str, Mask] = {}
    shape = None
    for utt, text in read_kaldi_map(path).items():
        try:
            mask = parse_mask(text)
        except ValueError as e:
            raise ValueError(f"{path}: utterance '{utt}': {e}") from None
        layers = {side: len(mask[side]) for side in SIDES}
        if shape is None:
            shape = layers
        elif layers != shape:
            raise ValueError(f"{path}: utterance '{utt}' has {layers} layers, earlier utterances {shape}")
        masks[utt] = mask
    return masks


def count_decoder_steps(tokens: str) -> int:
    """Decoder steps of one hypothesis from its ``token`` line: its non-special tokens plus
    the ``<eos>`` step (the ``<lang><task><notimestamps>`` prefix is given, not searched)."""
    return sum(1 for t in tokens.split() if not (t.startswith("<") and t.endswith(">"))) + 1


def keep_rate_rows(lang: str, task: str, masks: Sequence[Mask]) -> List[Dict]:
    """One usage.tsv row per side, layer and module: the fraction of ``masks`` executing it."""
    rows = []
    for side in SIDES:
        rates = np.asarray([m[side] for m in masks], dtype=float).mean(axis=0)
        for layer, layer_rates in enumerate(rates):
            for module, rate in zip(MODULES[side], layer_rates, strict=True):
                values = (lang, task, side, layer, module, float(rate), len(masks))
                rows.append(dict(zip(USAGE_COLUMNS, values, strict=True)))
    return rows


def sparsity(masks: Iterable[Mask], side: str) -> Optional[float]:
    """Fraction of ``side``'s modules (gated or not) that were skipped, over all utterances."""
    bits = [b for m in masks for row in m[side] for b in row]
    return 1.0 - sum(bits) / len(bits) if bits else None


def write_usage_tsv(path: PathLike, rows: Iterable[Mapping]) -> None:
    with atomic_output(path) as f:
        writer = csv.DictWriter(f, USAGE_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "keep_rate": f"{row['keep_rate']:.6f}"})


def read_usage_tsv(path: PathLike) -> List[Dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if tuple(reader.fieldnames or ()) != USAGE_COLUMNS:
            raise ValueError(f"{path}: header {reader.fieldnames}, expected {list(USAGE_COLUMNS)}")
        return [
            {**row, "layer": int(row["layer"]), "keep_rate": float(row["keep_rate"]), "n_utts": int(row["n_utts"])}
            for row in reader
        ]


def usage_grid(rows: Iterable[Mapping], side: str) -> np.ndarray:
    """Keep rates of one side as a (layers, modules) array, modules in layout order."""
    side_rows = [r for r in rows if r["side"] == side]
    grid = np.zeros((max(r["layer"] for r in side_rows) + 1, len(MODULES[side])))
    for r in side_rows:
        grid[r["layer"], MODULES[side].index(r["module"])] = r["keep_rate"]
    return grid


def plot_usage(rows: Sequence[Mapping], path: PathLike, title: str) -> None:
    """Heatmap PNG of keep rates: encoder and decoder panels, layers x modules."""
    n_layers = max(usage_grid(rows, side).shape[0] for side in SIDES)
    fig = Figure(figsize=(9, 2.5 + 0.35 * n_layers), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[len(MODULES["enc"]), len(MODULES["dec"])])
    for ax, side in zip(axes, SIDES, strict=True):
        grid = usage_grid(rows, side)
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_title({"enc": "encoder", "dec": "decoder"}[side])
        ax.set_xticks(range(len(MODULES[side])), MODULES[side], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(grid.shape[0]))
        ax.set_ylabel("layer")
        for (layer, module), rate in np.ndenumerate(grid):
            ax.text(
                module, layer, f"{rate:.2f}", ha="center", va="center", fontsize=7, color="w" if rate < 0.6 else "k"
            )
    fig.colorbar(image, ax=axes, label="keep rate")
    fig.suptitle(title)
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def _conv_output_length(conv: torch.nn.Module, n: int) -> int:
    """Length along time (the first spatial dimension) after a Conv1d/Conv2d."""
    pad, dil, k, stride = conv.padding[0], conv.dilation[0], conv.kernel_size[0], conv.stride[0]
    return (n + 2 * pad - dil * (k - 1) - 1) // stride + 1


class ComputeCost:
    """Analytic MACs of decoding one utterance with the model of a training ``config.yaml``.

    The model is built on the meta device: shapes only, no weights, no memory.
    """

    def __init__(self, config_path: PathLike):
        from espnet_gated.method.decoder import GatedTransformerDecoder  # imports ESPnet: only when FLOPs are wanted
        from espnet_gated.plugin.tasks import GatedS2TTask

        config = load_yaml(config_path)
        with torch.device("meta"):
            model = GatedS2TTask.build_model(argparse.Namespace(**config))
        stft = getattr(model.frontend, "stft", None)
        if stft is None:
            raise ValueError(f"{config_path}: frontend '{config.get('frontend')}' has no STFT; cannot count frames")
        self.stft = stft
        self.encoder, self.decoder = model.encoder, model.decoder
        self.cache_src_kv = isinstance(model.decoder, GatedTransformerDecoder)
        self.n_layers = {"enc": len(model.encoder.encoders), "dec": len(model.decoder.decoders)}
        layout = getattr(model, "gate_layout", None)
        #: per side, the (layer, module) positions that have a gate (an exported model has none)
        self.gated = {side: [] for side in SIDES}
        for slot in layout.slots if layout is not None else ():
            self.gated[slot.side].append((slot.layer, MODULES[slot.side].index(slot.module)))
        controller = getattr(model, "sparsity_controller", None)
        #: per side, the sparsity target of the training config (None: no target)
        self.targets = dict(controller.targets) if controller is not None else dict.fromkeys(SIDES)
        budget = getattr(controller, "budget", None)
        #: a budgeted model: the sides whose sparsity is asked for at decode time, the tasks held to it apart
        self.budget_sides, self.budget_tasks = (budget.sides, budget.tasks) if budget is not None else ((), ())

    def targets_at(self, budget: Optional[Sequence[float]]) -> Dict[str, object]:
        """Per side, the sparsity the model should have given at inference: the training config's target, or
        for a budgeted side the (encoder, decoder) ``budget`` it was decoded at (per task with per-task knots)."""
        targets = dict(self.targets)
        for i, side in enumerate(SIDES):
            if budget is not None and side in self.budget_sides:
                value = float(budget[i])
                targets[side] = {task: value for task in self.budget_tasks} if self.budget_tasks else value
        return targets

    def gated_sparsity(self, masks: Sequence[Mask], side: str) -> Optional[float]:
        """Skip rate of ``side``'s gated modules over ``masks``: what the sparsity target sets."""
        bits = [m[side][layer][module] for m in masks for layer, module in self.gated[side]]
        return 1.0 - sum(bits) / len(bits) if bits else None

    def encoder_frames(self, n_samples: int) -> int:
        """Frames the encoder layers see for ``n_samples`` samples of audio."""
        if self.stft.center:
            n = n_samples // self.stft.hop_length + 1
        else:
            n = (n_samples - self.stft.n_fft) // self.stft.hop_length + 1
        conv = getattr(self.encoder.embed, "conv", None)
        for module in conv.modules() if conv is not None else ():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
                n = _conv_output_length(module, n)
        return max(n, 0)

    def check(self, mask: Mask, where: str) -> None:
        for side in SIDES:
            if len(mask[side]) != self.n_layers[side]:
                raise ValueError(
                    f"{where}: gate mask has {len(mask[side])} {side} layers, the model {self.n_layers[side]}"
                )

    def utterance_macs(self, n_samples: int, n_steps: int, mask: Optional[Mask], beam_size: int) -> Dict[str, float]:
        """Executed (``enc``, ``dec``) and dense (``enc_dense``, ``dec_dense``) MACs of one utterance;
        ``mask`` None = every module executed."""
        frames = self.encoder_frames(n_samples)
        enc_mask = dec_mask = None
        if mask is not None:
            enc_mask, dec_mask = torch.tensor(mask["enc"]), torch.tensor(mask["dec"])
        decode = dict(n_frames=frames, n_steps=n_steps, n_hyps=beam_size, cache_src_kv=self.cache_src_kv)
        return {
            "enc": encoder_macs(self.encoder, frames, enc_mask),
            "dec": decode_macs(self.decoder, mask=dec_mask, **decode),
            "enc_dense": encoder_macs(self.encoder, frames),
            "dec_dense": decode_macs(self.decoder, **decode),
        }
