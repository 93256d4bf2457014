"""Inference-time execution plans: which batch rows compute which module.

A binary mask (B, n_layers, n_types) is turned once into a plan of row selections, so
the per-layer code does no host-device synchronisation. A selection is ``ALL`` (every
row keeps the module: compute it on the whole batch, exactly as the dense model does),
``None`` (no row keeps it: the module is not called at all) or a LongTensor of the rows
that keep it (computed on those rows only and scattered back).
"""

from typing import Callable, List, Optional, Union

import torch

ALL = slice(None)
Rows = Union[slice, torch.Tensor, None]


def rows_of(column: torch.Tensor) -> Rows:
    """Selection for one module given its (B,) boolean keep column (on the CPU)."""
    n_keep = int(column.sum())
    if n_keep == column.numel():
        return ALL
    if n_keep == 0:
        return None
    return column.nonzero().flatten()


def build_plan(mask: torch.Tensor) -> List[List[Rows]]:
    """mask: (B, n_layers, n_types) in {0, 1} -> plan[layer][type] of selections."""
    keep = (mask > 0.5).cpu()
    return [[rows_of(keep[:, layer, t]) for t in range(keep.size(2))] for layer in range(keep.size(1))]


def take(rows: Rows, tensor: Optional[torch.Tensor], device: torch.device):
    """The selected rows of ``tensor``; None and batch-broadcast (size-1) tensors pass."""
    if tensor is None or rows is ALL or tensor.size(0) == 1:
        return tensor
    return tensor.index_select(0, rows.to(device))


def add_on_rows(x: torch.Tensor, rows: Rows, fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
    """x + fn(*args) on the selected rows; other rows are returned unchanged.

    ``args`` are batch-first tensors (or None) sliced to the same rows as ``x``.
    """
    if rows is None:
        return x
    if rows is ALL:
        return x + fn(x, *args)
    idx = rows.to(x.device)
    sub = fn(x.index_select(0, idx), *(take(idx, a, x.device) for a in args))
    return x.index_add(0, idx, sub)
