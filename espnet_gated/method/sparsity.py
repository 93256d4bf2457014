"""Sparsity control: bring the skip rate of each side's gated modules to its target.

Two controllers (``sparsity_conf: {controller: ...}``):

* ``lagrangian`` (default): ``L * (lambda1 * (t - s) + lambda2 * (t - s)^2 + logit_l2 * mean(d^2))``
  per side, where ``s`` is the *expected* skip rate (1 - mean P(keep), differentiable through
  the softmax of the gate logits, beside the sampled gates that the forward pass uses), ``t``
  the target, ``d`` the keep-minus-skip logits of the side's gates and ``L`` the batch's task
  loss (detached). The multipliers rise by gradient ascent after every optimizer update, as in
  CoFi pruning (Xia et al., ACL 2022) and Sheared-LLaMA (Xia et al., 2023):
  ``lambda1 += lambda_lr * v`` and ``lambda2 += lambda_lr * v^2`` with ``v = t - s_inference``,
  the gap of the skip rate that inference gives the batch (deterministic gates): a multiplier
  keeps moving while inference misses the target and stops when it hits it.
  Why the factor ``L``: it makes the multipliers relative prices (loss increase accepted per
  unit of sparsity), so the whole update, model and multipliers, is the same whatever the scale
  of the task loss (Adam's steps do not change when every gradient is scaled): summed or
  length-normalized losses, 2 s or 30 s utterances need no other setting.
  Why ``logit_l2``: Adam moves a gate logit at a nearly constant speed, so a logit pushed far
  past zero takes hundreds of updates to come back, and the multipliers overshoot while they
  wait; a small pull toward zero keeps every gate within reach (a kept module is still sampled
  closed now and then, a few % of the time, like LayerDrop).
  The target ramps up from 0 over ``ramp_steps`` updates so that the multipliers track it.
* ``penalty``: the paper's fixed penalty ``alpha * (squared_weight * (t - s)^2 + abs_weight * |t - s|)``
  on the sampled gates (straight-through). Its pull, ``2 * alpha * (t - s)``, is fixed, so
  whether the target is reached depends on the task loss's scale; kept for comparison.

A target is a skip rate in [0, 1], or a mapping from task names to skip rates
(``decoder_target: {asr: 0.5, st_eng: 0.25}``): each task then has its own multipliers and is held
to its own target, measured over its utterances (a context-aware model can spend its budget
where a task can afford it; every training utterance's task must be listed). With ``weighting:
flops`` every slot counts in proportion to its compute, so a target is a compute budget. All
sparsities are computed in float32.
"""

import math
import re
from typing import Dict, List, Optional, Sequence

import torch

from espnet_gated.method.gates import keep_decisions, keep_probabilities
from espnet_gated.method.layout import MODULES, GateLayout

WEIGHTINGS = ("uniform", "flops")
TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CONTROLLERS = ("lagrangian", "penalty")
SIDES = ("enc", "dec")


def _check_target(name: str, value):
    """A skip rate, None, or {task: skip rate or None}, checked."""
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"sparsity_conf: {name} is an empty mapping (want {{task: skip rate}})")
        for task in value:
            if not (isinstance(task, str) and TASK_NAME.match(task)):
                raise ValueError(f"sparsity_conf: {name}: {task!r} is not a task name (like asr or st_eng)")
        return {task: _check_target(f"{name}.{task}", v) for task, v in value.items()}
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity_conf: {name} must be a number in [0, 1] (or null = off), got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"sparsity_conf: {name} must be within [0, 1] (or null = off), got {value}")
    return value


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"sparsity_conf: {name} must be a number >= 0, got {value!r}")


def _skip_rate(keep: torch.Tensor, idx, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean skip rate of the slots ``idx`` over a batch of (B, n_slots) keep values."""
    return 1.0 - (keep[:, idx].mean(0) * weights).sum()


class SparsityController(torch.nn.Module):
    """Sparsity loss plus, for ``lagrangian``, the multipliers and their ascent.

    The multipliers are buffers (saved with the model: a resumed run continues with them);
    ``lambdas[i, g]`` holds (lambda1, lambda2) of side ``SIDES[i]`` for group ``g``: the task
    ``tasks[g]`` where that side's target is per task, else group 0 stands for every
    utterance. :meth:`loss` is called in every
    training forward pass and records the batch's gap; :meth:`ascend` is called after every
    optimizer update (the task registers it) and moves the multipliers by the mean gap of the
    batches since the previous update, summed over DDP ranks.

    Args:
        controller: ``lagrangian`` or ``penalty`` (see the module docstring).
        encoder_target, decoder_target: skip rate to reach on that side (null = no target), or
            {task: skip rate} (see the module docstring).
        weighting: ``uniform`` (every slot counts the same) or ``flops``.
        ramp_steps: optimizer updates (after the gate warm-up) over which the target rises
            linearly from 0 to its value.
        lambda_lr: ascent rate of the multipliers (``lagrangian``).
        logit_l2: weight of the pull of the gate logits toward zero (``lagrangian``).
        alpha, squared_weight, abs_weight: the fixed penalty (``penalty``).
    """

    def __init__(
        self,
        controller: str = "lagrangian",
        encoder_target: Optional[float] = None,
        decoder_target: Optional[float] = None,
        weighting: str = "uniform",
        ramp_steps: int = 0,
        lambda_lr: float = 0.1,
        logit_l2: float = 0.005,
        alpha: float = 1.0,
        squared_weight: float = 1.0,
        abs_weight: float = 0.0,
    ):
        super().__init__()
        if controller not in CONTROLLERS:
            raise ValueError(f"sparsity_conf: controller must be one of {CONTROLLERS}, got {controller!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"sparsity_conf: weighting must be one of {WEIGHTINGS}, got '{weighting}'")
        _check_nonnegative(
            ramp_steps=ramp_steps,
            lambda_lr=lambda_lr,
            logit_l2=logit_l2,
            alpha=alpha,
            squared_weight=squared_weight,
            abs_weight=abs_weight,
        )
        self.controller = controller
        self.targets = {
            "enc": _check_target("encoder_target", encoder_target),
            "dec": _check_target("decoder_target", decoder_target),
        }
        self.weighting = weighting
        self.ramp_steps = int(ramp_steps)
        self.lambda_lr = float(lambda_lr)
        self.logit_l2 = float(logit_l2)
        self.alpha = float(alpha)
        self.squared_weight = float(squared_weight)
        self.abs_weight = float(abs_weight)
        #: the tasks with their own targets, in the order of the groups
        self.tasks: List[str] = sorted({t for v in self.targets.values() if isinstance(v, dict) for t in v})
        groups = max(1, len(self.tasks))
        self.register_buffer("lambdas", torch.zeros(len(SIDES), groups, 2))
        # per side and group: summed gap and number of batches since the last update
        self.register_buffer("_pending", torch.zeros(len(SIDES), groups, 2), persistent=False)

    def per_task(self, side: str) -> bool:
        return isinstance(self.targets[side], dict)

    def target(self, side: str, gating_updates: int, task: Optional[str] = None) -> Optional[float]:
        """The target of ``side`` (of ``task``, for a per-task side) after ``gating_updates`` updates
        of the ramp."""
        target = self.targets[side]
        if isinstance(target, dict):
            target = target.get(task)
        if target is None or self.ramp_steps <= 0:
            return target
        return target * min(1.0, gating_updates / self.ramp_steps)

    def groups_of(self, tasks: Sequence[str]) -> torch.Tensor:
        """The group index of each utterance's task; ValueError for a task without a target on a
        side with per-task targets."""
        if not self.tasks:
            return torch.zeros(len(tasks), dtype=torch.long)
        unknown = sorted(set(tasks) - set(self.tasks))
        if unknown:
            raise ValueError(
                f"sparsity_conf: no target for task(s) {unknown}: the per-task targets name {self.tasks} "
                "(add the task, or give that side one target for all)"
            )
        return torch.tensor([self.tasks.index(t) for t in tasks], dtype=torch.long)

    def loss(
        self,
        layout: GateLayout,
        gates: torch.Tensor,
        logits: torch.Tensor,
        task_loss: torch.Tensor,
        gating_updates: int,
        slot_costs: Optional[torch.Tensor] = None,
        record: bool = False,
        groups: Optional[torch.Tensor] = None,
    ):
        """The sparsity loss of one batch and its statistics.

        gates: (B, n_slots) sampled keep gates (straight-through gradients, or the inference
        gates in eval mode); logits: (B, n_slots, 2) the gate logits (skip, keep) they were
        drawn from; task_loss: the batch's task loss (its value scales the ``lagrangian``
        terms); slot_costs: (n_slots,) cost of each slot (``weighting: flops``); record: add
        the batch's gap to the next ascent; groups: (B,) each utterance's group
        (:meth:`groups_of`; needed with per-task targets).

        Returns (loss, stats): ``loss_sparsity``; per side ``sparsity_<side>`` (sampled gates),
        ``sparsity_<side>_inference``, ``target_<side>``, ``lambda1_<side>``, ``lambda2_<side>``
        (with per-task targets ``..._<side>_<task>`` for the last four, None where the batch has
        none of the task); per module type ``keep_<side>_<module>``, and per slot
        ``keep_<side>_l<layer>_<module>``.
        """
        gates, logits = gates.float(), logits.float()
        keep_prob, decisions = keep_probabilities(logits), keep_decisions(logits)
        scale = task_loss.detach().float()
        loss = gates.new_zeros(())
        stats: Dict[str, Optional[torch.Tensor]] = {}
        keep_rate = gates.detach().mean(0)
        for i, side in enumerate(SIDES):
            idx = layout.slot_indices(side)
            if not idx:
                stats[f"sparsity_{side}"] = None
                continue
            weights = gates.new_ones(len(idx))
            if self.weighting == "flops":
                weights = slot_costs[idx].to(gates)
            weights = weights / weights.sum()
            sampled, inference = _skip_rate(gates, idx, weights), _skip_rate(decisions, idx, weights)
            stats[f"sparsity_{side}"] = sampled.detach()
            stats[f"sparsity_{side}_inference"] = inference
            if self.per_task(side):
                if groups is None:
                    raise ValueError("per-task sparsity targets need each utterance's group")
                members = [(f"_{task}", g, groups == g) for g, task in enumerate(self.tasks)]
            else:
                members = [("", 0, None)]
            has_target = False
            for suffix, g, rows in members:
                target = self.target(side, gating_updates, self.tasks[g] if suffix else None)
                if suffix:
                    stats[f"sparsity_{side}{suffix}_inference"] = None
                if target is None:
                    continue
                has_target = True
                stats[f"target_{side}{suffix}"] = torch.tensor(target)
                if self.controller == "lagrangian":
                    lambda1, lambda2 = self.lambdas[i, g]
                    stats[f"lambda1_{side}{suffix}"], stats[f"lambda2_{side}{suffix}"] = (
                        lambda1.clone(),
                        lambda2.clone(),
                    )
                if rows is not None and not rows.any():
                    continue
                sub = slice(None) if rows is None else rows
                if self.controller == "penalty":  # the paper's loss: the whole target, on the sampled gates
                    full = self.target(side, self.ramp_steps, self.tasks[g] if suffix else None)
                    gap = full - _skip_rate(gates[sub], idx, weights)
                    loss = loss + self.alpha * (self.squared_weight * gap**2 + self.abs_weight * gap.abs())
                    continue
                share = 1.0 if rows is None else float(rows.float().mean())
                gap = target - _skip_rate(keep_prob[sub], idx, weights)
                loss = loss + scale * share * (lambda1 * gap + lambda2 * gap**2)
                measured = _skip_rate(decisions[sub], idx, weights)
                if suffix:
                    stats[f"sparsity_{side}{suffix}_inference"] = measured
                if record:
                    self._pending[i, g] += torch.stack([target - measured, measured.new_ones(())])
            if has_target and self.controller == "lagrangian":
                delta = logits[:, idx, 1] - logits[:, idx, 0]
                loss = loss + scale * self.logit_l2 * (delta**2).mean()
            for module in MODULES[side]:
                cols = [j for j in idx if layout.slots[j].module == module]
                if cols:
                    stats[f"keep_{side}_{module}"] = keep_rate[cols].mean()
                for j in cols:
                    stats[f"keep_{side}_l{layout.slots[j].layer}_{module}"] = keep_rate[j]
        stats["loss_sparsity"] = loss.detach()
        return loss, stats

    @torch.no_grad()
    def ascend(self) -> None:
        """Gradient ascent on the multipliers with the mean gap since the last update."""
        pending = self._pending
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(pending)
        seen = pending[..., 1] > 0
        gap = torch.where(seen, pending[..., 0] / pending[..., 1].clamp(min=1), torch.zeros_like(pending[..., 0]))
        self.lambdas[..., 0] += self.lambda_lr * gap
        self.lambdas[..., 1] += self.lambda_lr * gap**2
        pending.zero_()
