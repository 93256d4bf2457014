"""A range of sparsity budgets (``sparsity_conf.budget``): one model, the skip rate chosen at decode time.

The controller (``sparsity.py``) draws each training utterance's budget from the range, holds each to its value
(multipliers interpolated between knots, a pull toward each utterance's budget) and gives the gate predictor the
budget as an input (``gates.py``); decoding asks for one within the range, and each utterance's gates are held
to it, in training and at decoding (:meth:`Budget.hold_gates`).
"""

import math
from dataclasses import dataclass
from typing import Mapping, Tuple

import numpy
import torch

from espnet_gated.data.symbols import CONTEXT_NAME
from espnet_gated.method.layout import MODULES, GateLayout

SIDES = tuple(MODULES)  # ("enc", "dec")
BUDGET_KEYS = ("sample", "sides", "tasks", "knots", "pull", "default", "hold", "top_share")
#: ``hold``: how the gates meet a budget; ``utterance``: every utterance closes the number of modules nearest
#: its budget (:meth:`Budget.hold_gates`), in training and at decoding; ``mean``: the predictor's own
#: decisions, held to the budget only on average by training (free to spend it unevenly between contexts)
HOLDS = ("utterance", "mean")
#: default spacing of the budget knots (one multiplier pair per 0.1 of the range)
KNOT_SPACING = 0.1
#: default weight of each utterance's pull toward its own budget
DEFAULT_PULL = 5.0


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Budget:
    """``sparsity_conf.budget``, checked (:meth:`parse`): the range of budgets drawn in training,
    the sides they apply to, the tasks held to them separately, the multipliers' knots, the pull
    toward each utterance's budget, the budget used where none is asked (validation, decoding
    without one: the middle of the range unless ``default`` says otherwise), how the gates are held to it
    and the share of training utterances drawn at the top of the range (``top_share``: the hardest
    budget, trained more often, as the sandwich rule of slimmable networks trains the smallest width
    at every step; the rest are drawn evenly over the range)."""

    low: float
    high: float
    sides: Tuple[str, ...]
    tasks: Tuple[str, ...]
    knots: int
    pull: float
    default: float
    hold: str = "utterance"
    top_share: float = 0.0

    @classmethod
    def parse(cls, conf) -> "Budget":
        where = "sparsity_conf.budget"
        if not isinstance(conf, Mapping):
            raise ValueError(f"{where} must be a mapping like {{sample: [0.0, 0.8]}}, got {conf!r}")
        unknown = sorted(set(conf) - set(BUDGET_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {list(BUDGET_KEYS)}")
        sample = conf.get("sample")
        if not (isinstance(sample, (list, tuple)) and len(sample) == 2 and all(map(is_number, sample))):
            raise ValueError(
                f"{where}.sample must be [lo, hi], the range of skip rates drawn in training, got {sample!r}"
            )
        low, high = float(sample[0]), float(sample[1])
        if not (0.0 <= low <= 1.0 and 0.0 <= high <= 1.0):  # also rejects NaN
            raise ValueError(f"{where}.sample must lie within [0, 1], got [{low:g}, {high:g}]")
        if low > high:
            raise ValueError(f"{where}.sample: lo {low:g} is above hi {high:g}")
        sides = conf.get("sides", list(SIDES))
        if not (
            isinstance(sides, (list, tuple)) and sides and set(sides) <= set(SIDES) and len(set(sides)) == len(sides)
        ):
            raise ValueError(f"{where}.sides must be a list of distinct sides from {list(SIDES)}, got {sides!r}")
        tasks = conf.get("tasks")
        if tasks is not None:
            good = lambda t: isinstance(t, str) and CONTEXT_NAME.match(t)  # noqa: E731
            if not (isinstance(tasks, (list, tuple)) and tasks and all(map(good, tasks))):
                raise ValueError(f"{where}.tasks must be a list of task names (like [asr, st_eng]), got {tasks!r}")
        single = low == high
        knots = conf.get("knots", 1 if single else max(2, round((high - low) / KNOT_SPACING) + 1))
        if not (isinstance(knots, int) and not isinstance(knots, bool) and knots >= 1 and (knots >= 2) != single):
            want = "1 for a single budget (lo = hi)" if single else "an integer >= 2"
            raise ValueError(f"{where}.knots must be {want}, got {knots!r}")
        pull = conf.get("pull", DEFAULT_PULL)
        if not (is_number(pull) and math.isfinite(pull) and pull >= 0):
            raise ValueError(f"{where}.pull must be a number >= 0, got {pull!r}")
        default = conf.get("default", (low + high) / 2)
        if not (is_number(default) and low <= default <= high):
            raise ValueError(f"{where}.default must be a skip rate within sample [{low:g}, {high:g}], got {default!r}")
        hold = conf.get("hold", HOLDS[0])
        if hold not in HOLDS:
            raise ValueError(f"{where}.hold must be one of {list(HOLDS)}, got {hold!r}")
        top_share = conf.get("top_share", 0.0)
        if not (is_number(top_share) and 0.0 <= top_share < 1.0):
            raise ValueError(
                f"{where}.top_share must be a share in [0, 1) of the training utterances drawn at the top of the "
                f"range, got {top_share!r}"
            )
        sides, tasks = tuple(s for s in SIDES if s in sides), tuple(sorted(set(tasks or ())))
        return cls(low, high, sides, tasks, knots, float(pull), float(default), hold, float(top_share))

    def range_text(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"

    def knot_weights(self, budget: torch.Tensor) -> torch.Tensor:
        """(B,) budgets -> (B, knots) linear interpolation weights on the knots (each row sums to 1)."""
        budget = budget.float()
        if self.knots == 1:
            return torch.ones_like(budget).unsqueeze(-1)
        position = ((budget - self.low) / (self.high - self.low) * (self.knots - 1)).clamp(0, self.knots - 1)
        left = position.floor().clamp(max=self.knots - 2).long()
        right_share = position - left
        weights = budget.new_zeros(budget.size(0), self.knots)
        weights.scatter_(1, left.unsqueeze(-1), (1.0 - right_share).unsqueeze(-1))
        weights.scatter_add_(1, (left + 1).unsqueeze(-1), right_share.unsqueeze(-1))
        return weights

    def hold_gates(
        self, keep: torch.Tensor, logits: torch.Tensor, budgets: torch.Tensor, layout: GateLayout
    ) -> torch.Tensor:
        """Keep gates (B, n_slots) held to each utterance's budget (``hold: utterance``): on a budgeted
        side of n gated slots an utterance closes between floor(b * n) and ceil(b * n) of them, as the predictor
        decided where that lies in between, else the ones it is least sure to keep (lowest keep-minus-skip logit:
        the modules it would close first). Why: trained skip rates flatten out at the high end of the range (the
        recipe's budget model gave 0.70 when asked for 0.75 or 0.8) and vary between utterances; held, the skip
        rate is the one asked for, within one module. logits: (B, n_slots, 2); budgets: (B, 2); layout: the
        model's ``GateLayout`` (which slots belong to which side)."""
        if self.hold != "utterance":
            return keep
        # in Python lists: a decode holds one utterance at a time, where each torch op on a dozen numbers costs
        # microseconds (in torch the hold took 55-110 us of the predictor's 0.3-0.6 ms; in lists, 14-17 us). A
        # training batch pays once per step: 16 utterances 0.1 ms as in torch, 128 0.5-0.8 ms against 0.2-0.4.
        rows, asked, margins = keep.tolist(), budgets.tolist(), None  # margins: read at the first change
        for i, side in enumerate(SIDES):
            part = layout.slot_slice(side)
            n = part.stop - part.start
            if side not in self.sides or not n:
                continue
            for b, (row, budget) in enumerate(zip(rows, asked, strict=True)):
                closed, wanted = n - round(sum(row[part])), budget[i] * n
                closes = min(max(closed, math.floor(wanted + 1e-6)), math.ceil(wanted - 1e-6))
                if closes == closed:  # the predictor's own decisions meet it (the common case)
                    continue
                if margins is None:  # keep minus skip logit per slot, float32 as the predictor returns them
                    margins = (logits[..., 1] - logits[..., 0]).tolist()
                held = [1.0] * n
                for j in sorted(range(n), key=margins[b][part].__getitem__)[:closes]:  # the lowest margins
                    held[j] = 0.0
                row[part] = held
        if margins is None:  # no row changed: the predictor's own decisions meet every budget
            return keep
        return torch.from_numpy(numpy.array(rows, dtype=numpy.float32)).to(device=keep.device, dtype=keep.dtype)
