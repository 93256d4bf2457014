"""Gate predictor: utterance + context -> one keep/skip decision per gateable module.

Algorithm 1 of "Context-aware Dynamic Pruning for Speech Foundation Models": pool the
encoder's subsampled input over time, concatenate learned embeddings of the language and
task tokens, and map the result with a small MLP to (L, 2) logits. Training samples the
gates with a straight-through Gumbel-Softmax; inference keeps a module iff its keep-logit
beats its skip-logit.

A budget-conditioned predictor (``budget_input``, set by the model when ``sparsity_conf`` has a
``budget``) also takes each utterance's sparsity budget per side, the skip rate asked of the
encoder and of the decoder, as Fourier features of the value concatenated to its input: one
set of weights then serves every sparsity in the trained range, chosen per utterance.

The predictor computes in float32 with float32 weights whatever the model's dtype or autocast:
a keep decision is a comparison of two logits, and bf16 (8 bits of mantissa) would flip close ones.
Its schedules (warm-up, temperature) count optimizer updates, not forward passes:
:meth:`GatePredictor.count_update` is called after every optimizer step (the task
registers it, see ``tasks.py``), so ``accum_grad`` does not change them.
"""

import math
from itertools import chain
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_gated.data.symbols import CONTEXT_TOKEN

TAU_SCHEDULES = ("linear", "exponential", "constant")
#: Fourier frequencies of a budget's embedding (see :func:`budget_features`)
BUDGET_FREQUENCIES = 4


def masked_time_mean(xs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames. xs: (B, T, D); masks: (B, 1, T) bool, True = valid."""
    valid = masks.squeeze(1).to(xs.dtype).unsqueeze(-1)  # (B, T, 1)
    return (xs * valid).sum(1) / valid.sum(1).clamp(min=1.0)


class GatePredictor(torch.nn.Module):
    """MLP over [pooled audio ; language embedding ; task embedding].

    Args:
        n_gates: number of gateable modules L.
        audio_dim: size of the pooled speech representation (the encoder's d_model).
        token_list: the model's vocabulary; the bracketed non-timestamp tokens in it
            get context embeddings.
        hidden_size: width of the MLP's hidden layer.
        context_dim: size of each of the language and task embeddings.
        use_audio: false gives a context-only predictor: one mask per language-task pair
            (needed for static export).
        use_context: false ignores language and task.
        detach_audio: stop gradients from the predictor into the encoder's input layer.
        init_keep_bias: initial keep-minus-skip logit; the last layer's weights start at
            zero, so every gate starts open (P(keep) = sigmoid(bias) under Gumbel noise).
        warmup_steps: training steps that keep every gate open and the predictor unchanged
            (its gradient is zero) so the backbone learns before modules can be dropped;
            without it, training from scratch can close a module before it becomes useful
            (e.g. every ``src_attn``, leaving an audio-blind decoder). Straight-through
            gradients during warm-up would not do: they move the keep logits while the
            forward value stays 1, and the gates then close at once when it ends. The
            sparsity loss is off and the temperature schedule waits until it ends.
        tau_start, tau_end, tau_anneal_steps, tau_schedule: Gumbel-Softmax temperature,
            annealed over optimizer updates after the warm-up.
        budget_input: take a (B, 2) budget (skip rate asked of the encoder, of the decoder) in
            :meth:`forward`, embedded by :func:`budget_features`; set by the model from
            ``sparsity_conf.budget``, not a gate_conf option. False adds no parameter.

    Buffers saved with the model: ``train_steps`` (optimizer updates so far, so that resumed
    training continues the schedules) and ``context_counts`` (training utterances per
    context row whose gates the predictor learnt from, column 0 as language, 1 as task):
    at inference a language or task without any is refused (:meth:`unseen_context`).
    """

    def __init__(
        self,
        n_gates: int,
        audio_dim: int,
        token_list: Sequence[str],
        hidden_size: int = 256,
        context_dim: int = 64,
        use_audio: bool = True,
        use_context: bool = True,
        detach_audio: bool = True,
        init_keep_bias: float = 3.0,
        tau_start: float = 1.0,
        tau_end: float = 0.5,
        tau_anneal_steps: int = 10000,
        tau_schedule: str = "linear",
        warmup_steps: int = 0,
        budget_input: bool = False,
    ):
        super().__init__()
        if not (use_audio or use_context):
            raise ValueError("gate_conf: use_audio and use_context cannot both be false")
        if tau_schedule not in TAU_SCHEDULES:
            raise ValueError(f"gate_conf: tau_schedule must be one of {TAU_SCHEDULES}")
        if not (tau_start > 0 and tau_end > 0):
            raise ValueError("gate_conf: Gumbel temperatures must be positive")
        self.n_gates = n_gates
        self.use_audio = use_audio
        self.use_context = use_context
        self.detach_audio = detach_audio
        self.tau_start, self.tau_end = float(tau_start), float(tau_end)
        self.tau_anneal_steps = int(tau_anneal_steps)
        self.tau_schedule = tau_schedule
        self.warmup_steps = int(warmup_steps)
        self.budget_input = bool(budget_input)

        self.token_list = list(token_list)
        context_tokens = [t for t in self.token_list if CONTEXT_TOKEN.match(t)]
        # token id -> row of the context embeddings; row 0 = "not a context token"
        index = torch.zeros(len(self.token_list), dtype=torch.long)
        for row, token in enumerate(context_tokens, start=1):
            index[self.token_list.index(token)] = row
        self.register_buffer("context_index", index, persistent=False)
        self.register_buffer("context_counts", torch.zeros(len(context_tokens) + 1, 2, dtype=torch.long))
        # contexts of the batches since the last optimizer update (added by count_update)
        self.register_buffer("_pending_counts", torch.zeros_like(self.context_counts), persistent=False)

        in_dim = 0
        if use_audio:
            self.audio_norm = torch.nn.LayerNorm(audio_dim)
            in_dim += audio_dim
        if use_context:
            self.lang_embed = torch.nn.Embedding(len(context_tokens) + 1, context_dim)
            self.task_embed = torch.nn.Embedding(len(context_tokens) + 1, context_dim)
            in_dim += 2 * context_dim
        if self.budget_input:
            in_dim += 2 * 2 * BUDGET_FREQUENCIES
            self.register_buffer("budget_waves", budget_waves(), persistent=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden_size),
            torch.nn.GELU(),
            torch.nn.Linear(hidden_size, n_gates * 2),
        )
        out = self.mlp[-1]
        torch.nn.init.zeros_(out.weight)
        with torch.no_grad():
            out.bias.view(n_gates, 2).copy_(torch.tensor([0.0, float(init_keep_bias)]).expand(n_gates, 2))
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    def _apply(self, fn, recurse=True):
        """Module.to/half/bfloat16 move the predictor but keep its weights (and float buffers) in float32:
        a model cast to bf16 (ESPnet's ``train_dtype``, decoding ``--dtype``) would otherwise round them
        and change the decisions. Its few weights cost nothing in float32."""

        def tensors():
            return chain(self.named_parameters(), self.named_buffers())

        float32 = {name: t.detach().clone() for name, t in tensors() if t.dtype == torch.float32}
        super()._apply(fn, recurse)
        for name, t in tensors():
            if name in float32 and t.dtype != torch.float32:
                t.data = float32[name].to(t.device)
        return self

    def warming_up(self) -> bool:
        """True while training is within ``warmup_steps`` updates."""
        return self.training and int(self.train_steps) < self.warmup_steps

    def gating_updates(self) -> int:
        """Optimizer updates since the warm-up ended (the clock of the temperature and of the
        sparsity target's ramp)."""
        return max(0, int(self.train_steps) - self.warmup_steps)

    def count_update(self) -> None:
        """Called after every optimizer update: advances the schedules and adds the contexts
        of the batches since the previous update to ``context_counts`` (summed over DDP ranks)."""
        pending = self._pending_counts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(pending)
        self.context_counts += pending
        pending.zero_()
        self.train_steps += 1

    def temperature(self) -> float:
        step = self.gating_updates()
        if self.tau_schedule == "constant" or self.tau_anneal_steps <= 0:
            return self.tau_start
        frac = min(1.0, step / self.tau_anneal_steps)
        if self.tau_schedule == "linear":
            return self.tau_start + (self.tau_end - self.tau_start) * frac
        return self.tau_start * math.exp(math.log(self.tau_end / self.tau_start) * frac)

    def check_context(self, context: torch.Tensor, utt_ids: Optional[List[str]] = None) -> None:
        """Raise a clear error if a prefix token is not a language/task token."""
        rows = self.context_index[context]
        bad = (rows == 0).any(dim=1).nonzero().flatten().tolist()
        if bad:
            b = bad[0]
            toks = [self.token_list[int(i)] for i in context[b]]
            who = f"utterance '{utt_ids[b]}'" if utt_ids else f"batch row {b}"
            raise ValueError(f"{who}: text must start with <lang><task> tokens of the token list, got {toks}")

    def trained_contexts(self) -> Tuple[List[str], List[str]]:
        """(languages, tasks) whose embeddings the predictor was trained on."""
        tokens = [t for t in self.token_list if CONTEXT_TOKEN.match(t)]
        counts = self.context_counts[1:].tolist()
        pairs = list(zip(tokens, counts, strict=True))
        return [t for t, c in pairs if c[0] > 0], [t for t, c in pairs if c[1] > 0]

    def unseen_context(self, context: torch.Tensor) -> List[str]:
        """Tokens of a (B, 2) context that never were a language (column 0) or a task (column 1)
        in training; empty for a model that did not record its contexts (all counts zero)."""
        if not self.use_context or not bool(self.context_counts.any()):
            return []
        rows = self.context_index[context].cpu()
        counts = self.context_counts.cpu()
        unseen = []
        for column in (0, 1):
            never = counts[rows[:, column], column] == 0
            unseen += [self.token_list[int(t)] for t in context[:, column].cpu()[never].unique().tolist()]
        return unseen

    def forward(
        self,
        pooled: Optional[torch.Tensor],
        context: Optional[torch.Tensor],
        budget: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """pooled: (B, D) or None; context: (B, 2) token ids of <lang>, <task>; budget: (B, 2)
        skip rates asked of (encoder, decoder), only and always for a ``budget_input`` predictor.

        Returns float32 logits (B, n_gates, 2): [..., 0] = skip, [..., 1] = keep.
        """
        if (budget is not None) != self.budget_input:
            raise ValueError(
                "this gate predictor takes a sparsity budget per utterance (its model was trained with "
                "sparsity_conf.budget)"
                if self.budget_input
                else "this gate predictor was trained without a sparsity budget: it takes none"
            )
        device_type = (pooled if pooled is not None else context).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            feats = []
            if self.use_audio:
                if pooled is None:
                    raise ValueError("this gate predictor needs audio (use_audio: true)")
                norm = self.audio_norm
                audio = (pooled.detach() if self.detach_audio else pooled).float()
                weight, bias = norm.weight.float(), norm.bias.float()
                feats.append(F.layer_norm(audio, norm.normalized_shape, weight, bias, norm.eps))
            if self.use_context:
                if context is None:
                    raise ValueError("the gated model needs the <lang><task> context of each utterance")
                rows = self.context_index[context]
                if self.training and not self.warming_up():  # the embeddings of these rows learn now
                    for column in (0, 1):
                        self._pending_counts[:, column].index_add_(0, rows[:, column], torch.ones_like(rows[:, column]))
                feats += [self.lang_embed(rows[:, 0]).float(), self.task_embed(rows[:, 1]).float()]
            if self.budget_input:
                feats.append(budget_features(budget, self.budget_waves))
            x = torch.cat(feats, dim=-1)
            hidden, activation, out = self.mlp
            h = activation(F.linear(x, hidden.weight.float(), hidden.bias.float()))
            logits = F.linear(h, out.weight.float(), out.bias.float())
        return logits.view(x.size(0), self.n_gates, 2)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Float32 keep gates (B, n_gates) in {0, 1}.

        Training: straight-through Gumbel-Softmax (hard forward, soft gradient). During
        warm-up every gate is 1 with a zero gradient.
        Inference: deterministic, :func:`keep_decisions`.
        """
        logits = logits.float()
        if not self.training:
            return keep_decisions(logits)
        if self.warming_up():  # open, in the graph with a zero gradient (DDP needs every parameter used)
            return 1.0 + 0.0 * logits[..., 1]
        return F.gumbel_softmax(logits, tau=self.temperature(), hard=True)[..., 1]


def budget_waves() -> torch.Tensor:
    """The constants of :func:`budget_features`, (2, 2 * BUDGET_FREQUENCIES) float32: row 0 the angular
    frequencies k * pi (k = 1..BUDGET_FREQUENCIES, twice), row 1 the phases (0 for the sines, pi / 2 for the
    cosines). Kept as a buffer so that a decoded utterance's embedding is one fused multiply-add and one sine
    (5 us; building them each call took 15 us of the predictor's 0.3 ms)."""
    k = torch.arange(1, BUDGET_FREQUENCIES + 1, dtype=torch.float32) * math.pi
    phase = torch.tensor([0.0, math.pi / 2]).repeat_interleave(BUDGET_FREQUENCIES)
    return torch.stack([k.repeat(2), phase])


def budget_features(budget: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
    """Fourier features of (B, 2) budgets in [0, 1]: sin and cos of ``k * pi * b`` for k = 1..BUDGET_FREQUENCIES,
    per side, (B, 4 * BUDGET_FREQUENCIES) float32; ``waves``: :func:`budget_waves` (cos as a sine shifted by
    pi / 2). cos(pi * b) alone is monotonic over [0, 1]; the higher frequencies let the MLP's first layer (the
    learned projection) bend the response to the budget."""
    if budget.dim() != 2 or budget.size(-1) != 2:
        raise ValueError(f"a budget is (batch, 2): skip rates asked of (encoder, decoder); got {tuple(budget.shape)}")
    return torch.addcmul(waves[1], budget.float().unsqueeze(-1), waves[0]).sin_().flatten(1)


def keep_decisions(logits: torch.Tensor) -> torch.Tensor:
    """The inference gates of (B, n_gates, 2) logits: 1.0 where keep beats skip."""
    return (logits[..., 1] > logits[..., 0]).float()


def keep_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(keep) of each gate under Gumbel-Softmax sampling (the temperature does not change
    which side wins a hard sample): softmax over (skip, keep)."""
    return torch.softmax(logits.float(), dim=-1)[..., 1]
