"""Which modules of the model can be gated, and how a gate vector maps onto them.

The gate predictor emits one gate per *slot* (side, layer, module). The encoder and the
decoder want a dense ``(batch, n_layers, n_module_types)`` tensor instead, with ungated
positions fixed open; :class:`GateLayout` converts between the two and formats masks for
the ``gates`` files written at inference time.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

#: Gateable modules of one E-Branchformer layer, in execution order (ESPnet's names).
ENCODER_MODULES: Tuple[str, ...] = ("feed_forward_macaron", "attn", "cgmlp", "feed_forward")
#: Gateable modules of one Transformer decoder layer, in execution order (ESPnet's names).
DECODER_MODULES: Tuple[str, ...] = ("self_attn", "src_attn", "feed_forward")
MODULES = {"enc": ENCODER_MODULES, "dec": DECODER_MODULES}


@dataclass(frozen=True)
class Slot:
    side: str  # "enc" or "dec"
    layer: int
    module: str

    def __str__(self) -> str:
        return f"{self.side}.{self.layer}.{self.module}"


def _check_names(side: str, names: Sequence[str], present: Sequence[str]) -> None:
    for name in names:
        if name not in MODULES[side]:
            raise ValueError(
                f"unknown {side} module '{name}' in gate_conf; gateable {side} modules are {list(MODULES[side])}"
            )
        if name not in present:
            raise ValueError(
                f"{side} module '{name}' is gateable in gate_conf but the {side} "
                f"layers have no such module (present: {list(present)})"
            )


def _check_layers(side: str, layers: Sequence[int], n_layers: int) -> None:
    for layer in layers:
        if not 0 <= int(layer) < n_layers:
            raise ValueError(
                f"{side} layer {layer} in gate_conf does not exist: "
                f"the {side} has {n_layers} layers (0..{n_layers - 1})"
            )


class GateLayout:
    """The list of gated slots plus the shapes of both sides.

    Args:
        n_enc_layers, n_dec_layers: layer counts of the backbone.
        enc_present, dec_present: module names that exist in every layer
            (e.g. no ``feed_forward_macaron`` when the encoder has ``macaron_ffn: false``).
        enc_modules, dec_modules: module types to gate (a subset of the present ones).
        enc_layers, dec_layers: layer indices to gate (``None`` = all layers).
    """

    def __init__(
        self,
        n_enc_layers: int,
        n_dec_layers: int,
        enc_present: Sequence[str],
        dec_present: Sequence[str],
        enc_modules: Sequence[str],
        dec_modules: Sequence[str],
        enc_layers: Optional[Sequence[int]] = None,
        dec_layers: Optional[Sequence[int]] = None,
    ):
        _check_names("enc", enc_modules, enc_present)
        _check_names("dec", dec_modules, dec_present)
        enc_layers = range(n_enc_layers) if enc_layers is None else enc_layers
        dec_layers = range(n_dec_layers) if dec_layers is None else dec_layers
        _check_layers("enc", enc_layers, n_enc_layers)
        _check_layers("dec", dec_layers, n_dec_layers)
        self.n_layers = {"enc": n_enc_layers, "dec": n_dec_layers}
        self.present = {"enc": tuple(enc_present), "dec": tuple(dec_present)}
        self.slots: List[Slot] = []
        for side, layers, modules in (
            ("enc", enc_layers, enc_modules),
            ("dec", dec_layers, dec_modules),
        ):
            for layer in sorted(set(int(i) for i in layers)):
                for module in MODULES[side]:  # canonical order, whatever the config order
                    if module in modules:
                        self.slots.append(Slot(side, layer, module))
        # flat index of each slot inside the dense (n_layers * n_types) tensor of its side
        self._dense_index = {
            side: torch.tensor(
                [s.layer * len(MODULES[side]) + MODULES[side].index(s.module) for s in self.slots if s.side == side],
                dtype=torch.long,
            )
            for side in ("enc", "dec")
        }
        self._slot_range = {side: [i for i, s in enumerate(self.slots) if s.side == side] for side in ("enc", "dec")}
        # a side's slots are contiguous, the encoder's first: one slice per side, made once
        self._slot_slice = {
            side: slice(idx[0], idx[-1] + 1) if idx else slice(0, 0) for side, idx in self._slot_range.items()
        }

    def __len__(self) -> int:
        return len(self.slots)

    def slot_indices(self, side: str) -> List[int]:
        """Positions in the gate vector that belong to ``side``."""
        return self._slot_range[side]

    def slot_slice(self, side: str) -> slice:
        """:meth:`slot_indices` as a slice, so that indexing a gate vector gives a view, not a copy."""
        return self._slot_slice[side]

    def to_dense(self, gates: torch.Tensor, side: str) -> torch.Tensor:
        """(B, n_slots) gate vector -> (B, n_layers, n_types) for one side, ungated = 1."""
        n_types = len(MODULES[side])
        dense = gates.new_ones(gates.size(0), self.n_layers[side] * n_types)
        part = self.slot_slice(side)
        if part.stop > part.start:
            dense = dense.index_copy(1, self._dense_index[side].to(gates.device), gates[:, part])
        return dense.view(gates.size(0), self.n_layers[side], n_types)


def format_side(mask: torch.Tensor) -> str:
    """One side's binary dense mask (n_layers, n_types) as ``1111.1011``: layers separated by dots, inside a
    layer one bit per module in the order of :data:`ENCODER_MODULES` / :data:`DECODER_MODULES`."""
    return ".".join("".join("1" if b > 0.5 else "0" for b in row) for row in torch.as_tensor(mask).tolist())


def format_mask(enc: torch.Tensor, dec: torch.Tensor, budget: Optional[Sequence[float]] = None) -> str:
    """One utterance's binary dense masks as ``enc=1111.1011 dec=111.101`` (ungated modules show as 1), and the
    (encoder, decoder) sparsity budget a budgeted model decoded it at: ``budget=0.00,0.50``."""
    text = f"enc={format_side(enc)} dec={format_side(dec)}"
    return text if budget is None else f"{text} budget={budget[0]:.2f},{budget[1]:.2f}"


def parse_side(
    side: str, mask: Union[str, Sequence[Sequence[int]], torch.Tensor], n_layers: Optional[int] = None
) -> torch.Tensor:
    """Inverse of :func:`format_side`: a (n_layers, n_types) float tensor of 0/1 from ``1111.1011``, nested lists
    or a tensor; ValueError naming what is malformed (with ``n_layers``, also another number of layers)."""
    n_types = len(MODULES[side])
    if isinstance(mask, str):
        rows = []
        for layer in mask.strip().split("."):
            if len(layer) != n_types or set(layer) - {"0", "1"}:
                raise ValueError(
                    f"malformed {side} layer '{layer}' in '{mask}': want {n_types} bits for {list(MODULES[side])}, "
                    "layers separated by dots"
                )
            rows.append([int(b) for b in layer])
        mask = rows
    t = torch.as_tensor(mask, dtype=torch.float32)
    if t.dim() != 2 or t.size(1) != n_types or (n_layers is not None and t.size(0) != n_layers):
        want = f"({n_layers if n_layers is not None else 'layers'}, {n_types})"
        raise ValueError(f"{side} mask has shape {tuple(t.shape)}, the {side} needs {want}")
    if not torch.all((t == 0) | (t == 1)):
        raise ValueError(f"{side} mask must be binary, got {t.tolist()}")
    return t


def parse_mask(text: str) -> Dict[str, List]:
    """Inverse of :func:`format_mask`: ``{"enc": rows, "dec": rows}``, and ``"budget": [enc, dec]`` where the
    line has one; ValueError naming what is malformed."""
    out: Dict[str, List] = {}
    for field in text.split():
        key, _, value = field.partition("=")
        if key == "budget":
            try:
                out["budget"] = [float(v) for v in value.split(",")]
            except ValueError:
                out["budget"] = []
            if len(out["budget"]) != 2:
                raise ValueError(f"malformed budget '{value}' in gate mask: want <encoder>,<decoder> skip rates")
            continue
        if key not in MODULES or not value:
            raise ValueError(f"malformed gate mask field '{field}' (want enc=... dec=...)")
        out[key] = parse_side(key, value).int().tolist()
    if not {"enc", "dec"} <= set(out):
        raise ValueError(f"gate mask '{text}' needs both enc= and dec= fields")
    return out
