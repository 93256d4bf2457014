"""Inference-time execution plans: which batch rows compute which module.

A binary mask (B, n_layers, n_types) is turned once into a plan of row selections, so
the per-layer code does no host-device synchronisation. A selection is ``ALL`` (every
row keeps the module: compute it on the whole batch, exactly as the dense model does),
``None`` (no row keeps it: the module is not called at all) or a :class:`RowSet` of the
rows that keep it (computed on those rows only and scattered back).
"""

from typing import Callable, List, Optional, Union

import torch

ALL = slice(None)


class RowSet:
    """Rows of a batch that keep a module: ``index`` on the compute device (copied there once,
    when the plan is built, not at every decoder step), ``host`` the same on the CPU for what
    the host decides from them."""

    __slots__ = ("host", "index")

    def __init__(self, host: torch.Tensor, device: Optional[torch.device] = None):
        self.host = host
        self.index = host if device is None else host.to(device)

    def __len__(self) -> int:
        return self.host.numel()

    def on(self, device: torch.device) -> torch.Tensor:
        """The index on ``device`` (no copy when it is there already)."""
        return self.index.to(device)


Rows = Union[slice, RowSet, None]


def rows_of(column: torch.Tensor, device: Optional[torch.device] = None) -> Rows:
    """Selection for one module given its (B,) boolean keep column (on the CPU); a
    :class:`RowSet` gets its index on ``device``."""
    n_keep = int(column.sum())
    if n_keep == column.numel():
        return ALL
    if n_keep == 0:
        return None
    return RowSet(column.nonzero().flatten(), device)


def build_plan(mask: torch.Tensor, device: Optional[torch.device] = None) -> List[List[Rows]]:
    """mask: (B, n_layers, n_types) in {0, 1} -> plan[layer][type] of selections, their
    indices on ``device`` (default: the mask's)."""
    device = mask.device if device is None else device
    keep = (mask > 0.5).cpu()
    return [[rows_of(keep[:, layer, t], device) for t in range(keep.size(2))] for layer in range(keep.size(1))]


def take(rows: Rows, tensor: Optional[torch.Tensor]):
    """The selected rows of ``tensor``; None and batch-broadcast (size-1) tensors pass."""
    if tensor is None or rows is ALL or tensor.size(0) == 1:
        return tensor
    return tensor.index_select(0, rows.on(tensor.device))


def add_rows(x: torch.Tensor, rows: Rows, y: torch.Tensor) -> torch.Tensor:
    """x with ``y`` added to the selected rows (all rows for ``ALL``); under autocast ``y``
    may be of lower precision than ``x``."""
    if rows is ALL:
        return x + y
    return x.index_add(0, rows.on(x.device), y.to(x.dtype))


def add_on_rows(x: torch.Tensor, rows: Rows, fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
    """x + fn(*args) on the selected rows; other rows are returned unchanged.

    ``args`` are batch-first tensors (or None) sliced to the same rows as ``x``.
    """
    if rows is None:
        return x
    if rows is ALL:
        return x + fn(x, *args)
    return add_rows(x, rows, fn(take(rows, x), *(take(rows, a) for a in args)))
