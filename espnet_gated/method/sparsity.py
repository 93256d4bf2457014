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

A budget (``sparsity_conf: {budget: {sample: [lo, hi]}}``) makes the sparsity a decode-time choice:
every training utterance gets a budget per budgeted side (``sides``), a skip rate drawn uniformly
from ``[lo, hi]`` (or ``hi`` itself for a ``top_share`` of them; :meth:`SparsityController.draw_budgets`,
from torch's RNG), which the gate predictor takes as an input (``gates.py``) and the controller holds
it to with two terms:

* the Lagrangian above with multipliers that are piecewise-linear functions of the budget: one
  (lambda1, lambda2) pair per knot of an even grid over the range (``knots``, one per 0.1 by
  default), an utterance's pair interpolated between its two knots. Each knot's term uses the mean
  gap of the utterances near it (weighted by the interpolation weights) and each knot ascends on
  their mean inference gap, so the mean skip rate meets the budget across the range.
* ``L * pull * mean((b - s)^2)`` over the utterances, each with its own budget ``b`` and expected
  skip rate ``s``. Why: a model's skip rate moves in steps, one module at a time, as the price
  of sparsity crosses a module's cost, and a price interpolated between knots misses the steps in
  between: without the pull, inference missed budgets between knots by up to 0.04 in the toy
  harness (``tests/test_sparsity_control.py``), with ``pull: 5`` by at most 0.025. The price of the
  pull: utterances of different contexts are drawn toward the same skip rate (``pull: 0`` leaves
  a context-aware model free to spend a budget unevenly, as a single fixed target does).

A budgeted side has no fixed target (its target is null); the other side may keep one. With
``tasks: [asr, st_eng]`` each task has its own multipliers per knot and is held to the budget over
its own utterances (as per-task targets are); without, one set serves all utterances. The ramp
scales every budget by the same factor. Needs the ``lagrangian`` controller. Decoding asks for a
budget per side (:meth:`SparsityController.decode_budgets` checks it against the trained range), and
with ``hold: utterance`` (the default) each utterance's inference gates close the number of modules
nearest its budget (``Budget.hold_gates``), so that the skip rate is the one asked for; training holds
each utterance to its ramped budget the same way, straight-through, so that the backbone learns with the
masks decoding uses (``GatedESPnetS2TModel.predict_gates``).
"""

import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_gated.data.symbols import CONTEXT_NAME
from espnet_gated.method.budget import SIDES, Budget
from espnet_gated.method.gates import keep_decisions, keep_probabilities
from espnet_gated.method.layout import MODULES, GateLayout

WEIGHTINGS = ("uniform", "flops")
CONTROLLERS = ("lagrangian", "penalty")
SIDE_NAMES = {"enc": "encoder", "dec": "decoder"}


def _check_target(name: str, value):
    """A skip rate, None, or {task: skip rate or None}, checked."""
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"sparsity_conf: {name} is an empty mapping (want {{task: skip rate}})")
        for task in value:
            if not (isinstance(task, str) and CONTEXT_NAME.match(task)):
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


class BudgetRequestError(ValueError):
    """A sparsity asked of a model at decode time that it cannot give (malformed, outside its trained range, a
    side without a budget, a model trained for fixed targets)."""


class SparsityController(torch.nn.Module):
    """Sparsity loss plus, for ``lagrangian``, the multipliers and their ascent.

    The multipliers are buffers (saved with the model: a resumed run continues with them);
    ``lambdas[i, g]`` holds (lambda1, lambda2) of side ``SIDES[i]`` for group ``g``: the task
    ``tasks[g]`` where that side's target (or budget) is per task, else group 0 stands for every
    utterance. With a budget, ``lambdas[i, g, k]`` is the pair of knot ``k`` (a budget-free side
    uses knot 0). :meth:`loss` is called in every training forward pass and records the batch's
    gap; :meth:`ascend` is called after every optimizer update (the task registers it) and moves
    the multipliers by the mean gap of the utterances since the previous update, summed over DDP
    ranks.

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
        budget: ``{sample: [lo, hi], sides: [enc, dec], tasks: null, knots: <one per 0.1>, pull: 5,
            default: <middle of the range>, hold: utterance, top_share: 0}`` (see the module docstring;
            :class:`Budget`); null: fixed targets only.
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
        budget: Optional[Dict] = None,
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
        #: the budget range and its sides (None: fixed targets only)
        self.budget: Optional[Budget] = None if budget is None else Budget.parse(budget)
        if self.budget is not None:
            if controller != "lagrangian":
                raise ValueError(f"sparsity_conf: budget needs controller: lagrangian, got {controller!r}")
            for side in self.budget.sides:
                if self.targets[side] is not None:
                    raise ValueError(
                        f"sparsity_conf: {SIDE_NAMES[side]}_target is {self.targets[side]} but budget.sides includes "
                        f"{side}: a budgeted side has no fixed target (set it to null or drop {side} from budget.sides)"
                    )
        self.weighting = weighting
        self.ramp_steps = int(ramp_steps)
        self.lambda_lr = float(lambda_lr)
        self.logit_l2 = float(logit_l2)
        self.alpha = float(alpha)
        self.squared_weight = float(squared_weight)
        self.abs_weight = float(abs_weight)
        #: the tasks with their own targets or budget multipliers, in the order of the groups
        tasks = {t for v in self.targets.values() if isinstance(v, dict) for t in v}
        self.tasks: List[str] = sorted(tasks | set(self.budget.tasks if self.budget else ()))
        shape = (len(SIDES), max(1, len(self.tasks))) + ((self.budget.knots,) if self.budget else ()) + (2,)
        self.register_buffer("lambdas", torch.zeros(shape))
        # per side, group (and knot): summed gap and number of utterances since the last update
        self.register_buffer("_pending", torch.zeros(shape), persistent=False)

    @property
    def budgeted(self) -> bool:
        """True if the predictor takes a budget (``budget`` is set)."""
        return self.budget is not None

    def budgeted_side(self, side: str) -> bool:
        return self.budget is not None and side in self.budget.sides

    def per_task(self, side: str) -> bool:
        if self.budgeted_side(side):
            return bool(self.budget.tasks)
        return isinstance(self.targets[side], dict)

    def ramp(self, gating_updates: int) -> float:
        """The share of every target (and budget) reached after ``gating_updates`` updates."""
        return 1.0 if self.ramp_steps <= 0 else min(1.0, gating_updates / self.ramp_steps)

    def target(self, side: str, gating_updates: int, task: Optional[str] = None) -> Optional[float]:
        """The fixed target of ``side`` (of ``task``, for a per-task side) after ``gating_updates``
        updates of the ramp (None for a budgeted side)."""
        target = self.targets[side]
        if isinstance(target, dict):
            target = target.get(task)
        if target is None or self.ramp_steps <= 0:
            return target
        return target * self.ramp(gating_updates)

    def groups_of(self, tasks: Sequence[str]) -> torch.Tensor:
        """The group index of each utterance's task; ValueError for a task without a target on a
        side with per-task targets (or budget tasks)."""
        if not self.tasks:
            return torch.zeros(len(tasks), dtype=torch.long)
        unknown = sorted(set(tasks) - set(self.tasks))
        if unknown:
            raise ValueError(
                f"sparsity_conf: no target for task(s) {unknown}: the per-task targets (or budget.tasks) name "
                f"{self.tasks} (add the task, or give that side one target for all)"
            )
        return torch.tensor([self.tasks.index(t) for t in tasks], dtype=torch.long)

    def draw_budgets(
        self, n: int, device: Optional[torch.device] = None, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """(n, 2) training budgets (encoder, decoder): uniform over the range for a budgeted side,
        0 for the other, stratified (one budget in each n-th of the range, in random order: every
        batch covers the range, so every knot's multipliers hear from it); then ``budget.top_share``
        of them, chosen at random (the count rounded at random, so that small batches get the share on
        average), move to the top of the range. Drawn on the CPU from ``generator`` (default: torch's
        global RNG, which ESPnet seeds), so a seed gives the same budgets on any device."""
        if self.budget is None:
            raise ValueError("sparsity_conf has no budget: there is nothing to draw")
        strata = torch.stack([torch.randperm(n, generator=generator) for _ in SIDES], dim=1)
        u = (strata + torch.rand(n, len(SIDES), generator=generator)) / n
        budgets = self.budget.low + (self.budget.high - self.budget.low) * u
        if self.budget.top_share:
            for i in range(len(SIDES)):
                n_top = int(self.budget.top_share * n + torch.rand((), generator=generator).item())
                budgets[torch.randperm(n, generator=generator)[:n_top], i] = self.budget.high
        mask = torch.tensor([self.budgeted_side(side) for side in SIDES])
        return (budgets * mask).to(device)

    def default_budgets(self, n: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """(n, 2) budgets where none is asked (validation, decoding without one): ``budget.default``."""
        if self.budget is None:
            raise ValueError("sparsity_conf has no budget: there is no default budget")
        return self.budget_tensor(self.decode_budgets(), n, device)

    def decode_budgets(self, sparsity=None, enc_sparsity=None, dec_sparsity=None) -> Optional[Tuple[float, float]]:
        """(encoder, decoder) budgets for decoding, or None for a model without a budget that was
        asked for none. ``sparsity`` applies to every budgeted side, ``enc_sparsity`` and
        ``dec_sparsity`` to one (they win over ``sparsity``); a side not asked for gets the
        default. Numbers or numeric strings. ValueError, one line naming the option and the
        trained range, for a malformed value, a value outside the range, a side without a budget
        or a model trained without one."""
        asked = {"sparsity": sparsity, "enc_sparsity": enc_sparsity, "dec_sparsity": dec_sparsity}
        asked = {name: value for name, value in asked.items() if value is not None}
        if self.budget is None:
            if not asked:
                return None
            fixed = ", ".join(f"{SIDE_NAMES[s]} {self.targets[s]}" for s in SIDES if self.targets[s] is not None)
            raise BudgetRequestError(
                f"{next(iter(asked))}: this model was trained for fixed sparsity targets ({fixed or 'none'}), "
                "not a budget range: it decodes at its own sparsity only"
            )
        values = {}
        for name, value in asked.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or math.isnan(number):
                raise BudgetRequestError(f"{name}: want a skip rate in {self.budget.range_text()}, got {value!r}")
            if not self.budget.low - 1e-9 <= number <= self.budget.high + 1e-9:
                trained = self.budget.range_text()
                raise BudgetRequestError(
                    f"{name} {number:g} is outside the budget range this model was trained on, {trained}"
                )
            values[name] = min(max(number, self.budget.low), self.budget.high)
        for side in SIDES:
            if f"{side}_sparsity" in values and not self.budgeted_side(side):
                raise BudgetRequestError(
                    f"{side}_sparsity: this model's {SIDE_NAMES[side]} has no budget "
                    f"(budgeted: {', '.join(SIDE_NAMES[s] for s in self.budget.sides)})"
                )
        general = values.get("sparsity", self.budget.default)
        return tuple(values.get(f"{side}_sparsity", general) if self.budgeted_side(side) else 0.0 for side in SIDES)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def budget_tensor(budgets: Tuple[float, float], n: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """The (n, 2) predictor input of one (encoder, decoder) budget pair for a batch of n. Memoized, as
        a decode asks for the same pair for every utterance (building it took 5 us of the predictor's 0.3 ms,
        29 us between two decodes that evict the caches); the callers read it and never write to it."""
        return torch.tensor([budgets], dtype=torch.float32, device=device).expand(n, len(SIDES))

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
        budgets: Optional[torch.Tensor] = None,
    ):
        """The sparsity loss of one batch and its statistics.

        gates: (B, n_slots) sampled keep gates (straight-through gradients, or the inference
        gates in eval mode); logits: (B, n_slots, 2) the gate logits (skip, keep) they were
        drawn from; task_loss: the batch's task loss (its value scales the ``lagrangian``
        terms); slot_costs: (n_slots,) cost of each slot (``weighting: flops``); record: add
        the batch's gap to the next ascent; groups: (B,) each utterance's group
        (:meth:`groups_of`; needed with per-task targets); budgets: (B, 2) each utterance's
        (encoder, decoder) budget, the predictor's input (needed with, and only with, a budget).

        Returns (loss, stats): ``loss_sparsity``; per side ``sparsity_<side>`` (sampled gates),
        ``sparsity_<side>_inference``, ``target_<side>``, ``lambda1_<side>``, ``lambda2_<side>``
        (with per-task targets ``..._<side>_<task>`` for the last four, None where the batch has
        none of the task); per module type ``keep_<side>_<module>``, and per slot
        ``keep_<side>_l<layer>_<module>``. On a budgeted side the target and the multipliers are
        the batch's means (the targets ramped, each utterance's multipliers interpolated).
        """
        if (budgets is None) == self.budgeted:
            raise ValueError(
                "sparsity_conf has a budget: the loss needs each utterance's budgets"
                if self.budgeted
                else "sparsity_conf has no budget: the loss takes no budgets"
            )
        gates, logits = gates.float(), logits.float()
        keep_prob, decisions = keep_probabilities(logits), keep_decisions(logits)
        scale = task_loss.detach().float()
        loss = gates.new_zeros(())
        stats: Dict[str, Optional[torch.Tensor]] = {}
        keep_rate = gates.detach().mean(0)
        batch = gates.size(0)
        lambdas = self.lambdas.view(len(SIDES), self.lambdas.size(1), -1, 2)  # (sides, groups, knots, 2)
        pending = self._pending.view(lambdas.shape)
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
            # per utterance: expected and inference skip rates
            expected_skip, measured_skip = 1.0 - keep_prob[:, idx] @ weights, 1.0 - decisions[:, idx] @ weights
            budgeted = self.budgeted_side(side)
            if budgeted:
                side_budget = budgets[:, i].float().to(gates.device)
                utterance_targets = side_budget * self.ramp(gating_updates)
                side_knots = self.budget.knot_weights(side_budget)
            if self.per_task(side):
                if groups is None:
                    raise ValueError("per-task sparsity targets need each utterance's group")
                members = [(f"_{task}", g, groups == g) for g, task in enumerate(self.tasks)]
            else:
                members = [("", 0, None)]
            has_target = False
            for suffix, g, rows in members:
                task = self.tasks[g] if suffix else None
                if suffix:
                    stats[f"sparsity_{side}{suffix}_inference"] = None
                if budgeted:
                    targets, knot_share = utterance_targets, side_knots
                else:  # a fixed target: knot 0's multipliers
                    target = self.target(side, gating_updates, task)
                    if target is None:
                        continue
                    targets, knot_share = gates.new_full((batch,), target), gates.new_ones(batch, 1)
                has_target = True
                if rows is not None:
                    knot_share = knot_share * rows.unsqueeze(-1).to(knot_share)
                knots = slice(0, knot_share.size(1))
                multipliers = lambdas[i, g, knots] if self.controller == "lagrangian" else None
                self._target_stats(stats, f"{side}{suffix}", multipliers, knot_share, targets, budgeted)
                if rows is not None and not rows.any():
                    continue
                sub = slice(None) if rows is None else rows
                if self.controller == "penalty":  # the paper's loss: the whole target, on the sampled gates
                    full = self.target(side, self.ramp_steps, task)
                    gap = full - _skip_rate(gates[sub], idx, weights)
                    loss = loss + self.alpha * (self.squared_weight * gap**2 + self.abs_weight * gap.abs())
                    continue
                # per knot: the utterances' weight, the mean gap of their expected skip rates
                knot_weight = knot_share.sum(0)
                near = knot_weight > 0
                gap = (knot_share * (targets - expected_skip).unsqueeze(-1)).sum(0) / knot_weight.clamp(min=1e-12)
                lambda1, lambda2 = lambdas[i, g, knots].unbind(-1)
                terms = (knot_weight / batch) * (lambda1 * gap + lambda2 * gap**2)
                loss = loss + scale * terms[near].sum()
                if suffix:
                    stats[f"sparsity_{side}{suffix}_inference"] = measured_skip[sub].mean()
                if record:
                    measured_gap = (knot_share * (targets - measured_skip).unsqueeze(-1)).sum(0)
                    pending[i, g, knots] += torch.stack([measured_gap, knot_weight], dim=-1).detach()
            if budgeted:  # every utterance hears its own budget (see the module docstring)
                loss = loss + scale * self.budget.pull * ((utterance_targets - expected_skip) ** 2).mean()
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

    @staticmethod
    def _target_stats(stats, key: str, lambdas, knot_share, targets, budgeted: bool) -> None:
        """``target_<key>`` and (with ``lambdas``, (knots, 2)) ``lambda1_<key>``, ``lambda2_<key>``: a fixed
        target and its multipliers, or a budgeted side's means over the batch's utterances of the group
        (None if it has none)."""
        names = [f"target_{key}"] + ([f"lambda1_{key}", f"lambda2_{key}"] if lambdas is not None else [])
        if not budgeted:
            values = [targets[0].detach().clone()] + ([] if lambdas is None else list(lambdas[0].clone().unbind()))
            stats.update(zip(names, values, strict=True))
            return
        utterances = knot_share.sum(-1)  # 1 for a member of the group, else 0
        count = utterances.sum()
        if not count > 0:
            stats.update(dict.fromkeys(names))
            return
        values = [((targets * utterances).sum() / count).detach()]
        if lambdas is not None:
            values += list(((knot_share @ lambdas).sum(0) / count).unbind())  # each utterance's, interpolated
        stats.update(zip(names, values, strict=True))

    @torch.no_grad()
    def ascend(self) -> None:
        """Gradient ascent on the multipliers with the mean gap since the last update."""
        pending = self._pending
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(pending)
        seen = pending[..., 1] > 0
        gap = torch.where(seen, pending[..., 0] / pending[..., 1].clamp(min=1e-12), torch.zeros_like(pending[..., 0]))
        self.lambdas[..., 0] += self.lambda_lr * gap
        self.lambdas[..., 1] += self.lambda_lr * gap**2
        pending.zero_()
