"""Sparsity loss: pull the mean skip rate of the gated modules toward a target.

loss = alpha * sum over sides with a target of
       (squared_weight * (target - s)^2 + abs_weight * |target - s|)

where s is the batch's mean skip rate over that side's gated slots. The paper's first
author reports that the absolute term alone did not reach the target and the squared
term did, hence the default (squared only). With ``weighting: flops`` every slot counts
in proportion to its compute, so the target becomes a compute budget.
"""

from typing import Dict, Optional

import torch

from espnet_gated.layout import MODULES, GateLayout

WEIGHTINGS = ("uniform", "flops")


def _check_target(name: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity_conf: {name} must be a number in [0, 1] (or null = off), got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"sparsity_conf: {name} must be within [0, 1] (or null = off), got {value}")
    return value


class SparsityLoss:
    def __init__(
        self,
        alpha: float = 1.0,
        encoder_target: Optional[float] = None,
        decoder_target: Optional[float] = None,
        squared_weight: float = 1.0,
        abs_weight: float = 0.0,
        weighting: str = "uniform",
    ):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"sparsity_conf: weighting must be one of {WEIGHTINGS}, got '{weighting}'")
        if alpha < 0 or squared_weight < 0 or abs_weight < 0:
            raise ValueError("sparsity_conf: alpha, squared_weight and abs_weight must be >= 0")
        self.alpha = float(alpha)
        self.targets = {
            "enc": _check_target("encoder_target", encoder_target),
            "dec": _check_target("decoder_target", decoder_target),
        }
        self.squared_weight = float(squared_weight)
        self.abs_weight = float(abs_weight)
        self.weighting = weighting

    def __call__(
        self,
        gates: torch.Tensor,
        layout: GateLayout,
        slot_costs: Optional[torch.Tensor] = None,
    ):
        """gates: (B, n_slots) keep gates (with straight-through gradients).

        slot_costs: (n_slots,) cost of each slot, used when ``weighting == "flops"``.
        Returns (loss, stats) with ``loss_sparsity``, ``sparsity_enc``, ``sparsity_dec``
        and ``keep_<side>_<module>`` for every gated module type.
        """
        skip = 1.0 - gates.mean(0)  # (n_slots,) skip rate over the batch
        loss = gates.new_zeros(())
        stats: Dict[str, Optional[torch.Tensor]] = {}
        for side in ("enc", "dec"):
            idx = layout.slot_indices(side)
            if not idx:
                stats[f"sparsity_{side}"] = None
                continue
            s_side = skip[idx]
            if self.weighting == "flops":
                w = slot_costs[idx].to(skip)
                s = (s_side * w).sum() / w.sum()
            else:
                s = s_side.mean()
            stats[f"sparsity_{side}"] = s.detach()
            target = self.targets[side]
            if target is not None:
                gap = target - s
                loss = loss + self.squared_weight * gap**2 + self.abs_weight * gap.abs()
            for module in MODULES[side]:
                cols = [i for i in idx if layout.slots[i].module == module]
                if cols:
                    stats[f"keep_{side}_{module}"] = (1.0 - skip[cols].mean()).detach()
        loss = self.alpha * loss
        stats["loss_sparsity"] = loss.detach()
        return loss, stats
