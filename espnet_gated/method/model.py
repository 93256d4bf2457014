"""The gated OWSM model (``model: gated_espnet``).

ESPnet's :class:`ESPnetS2TModel` plus a gate predictor and the sparsity loss. The dense
model's code paths are reused: ESPnet's own ``forward`` and ``encode`` run unchanged on a view
of the model whose encoder predicts the batch's gates and whose decoder runs with them
(:mod:`espnet_gated.adapter`); the gates come back as a value (:class:`GateState`).

Where the context comes from:

* training/validation: the first two tokens of ``text`` (``<lang><task>``);
* inference: ``encode_gated(speech, lengths, context=...)`` with the ids of ``lang_sym`` and
  ``task_sym`` (done by :class:`espnet_gated.decoding.inference.GatedSpeech2Text`).
"""

import inspect
import time
from dataclasses import dataclass
from functools import partial
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_gated.adapter import espnet_encode, espnet_forward
from espnet_gated.method.decoder import GatedTransformerDecoder
from espnet_gated.method.distill import Teacher, check_distill_conf, token_kl
from espnet_gated.method.encoder import GatedEBranchformerEncoder
from espnet_gated.method.flops import slot_costs
from espnet_gated.method.gates import GatePredictor, masked_time_mean
from espnet_gated.method.layout import GateLayout
from espnet_gated.method.sparsity import SparsityController

#: gate_conf keys that choose the gated slots (the rest configure the predictor)
LAYOUT_KEYS = ("gate_encoder", "gate_decoder", "encoder_modules", "decoder_modules", "encoder_layers", "decoder_layers")


def _options(cls, skip=()) -> List[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *skip)]


def check_gate_conf(gate_conf: Optional[Dict]) -> Dict:
    """A copy of ``model_conf.gate_conf``; ValueError for unknown keys or ill-typed values."""
    conf = dict(gate_conf or {})
    known = list(LAYOUT_KEYS) + _options(GatePredictor, skip=("n_gates", "audio_dim", "token_list", "budget_input"))
    unknown = sorted(set(conf) - set(known))
    if unknown:
        raise ValueError(f"model_conf.gate_conf: unknown key(s) {unknown}; known: {known}")
    for key in ("encoder_modules", "decoder_modules"):
        value = conf.get(key)
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"model_conf.gate_conf.{key}: want a list of module names, got {value!r}")
    for key in ("encoder_layers", "decoder_layers"):
        value = conf.get(key)
        is_index = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if value is not None and (not isinstance(value, (list, tuple)) or not all(map(is_index, value))):
            raise ValueError(f"model_conf.gate_conf.{key}: want a list of layer indices (or null = all), got {value!r}")
    return conf


def check_sparsity_conf(sparsity_conf: Optional[Dict]) -> Dict:
    """A copy of ``model_conf.sparsity_conf``; ValueError for unknown keys."""
    conf = dict(sparsity_conf or {})
    known = _options(SparsityController)
    unknown = sorted(set(conf) - set(known))
    if unknown:
        raise ValueError(f"model_conf.sparsity_conf: unknown key(s) {unknown}; known: {known}")
    return conf


@dataclass
class GateState:
    """The gates of one encoded batch (what ``encode_gated`` returns beside the encoder output)."""

    slots: Optional[torch.Tensor]  # (B, n_slots) float32 predicted gates (sampled in training), None when forced
    enc: torch.Tensor  # (B, n_enc_layers, 4), ungated = 1, in the dtype of the encoder's activations
    dec: torch.Tensor  # (B, n_dec_layers, 3), ungated = 1, same dtype
    frames: torch.Tensor  # (B,) valid encoder frames
    warmup: bool = False  # predicted during the gate warm-up (all open, no sparsity loss)
    context: Optional[torch.Tensor] = None  # (B, 2) the <lang><task> ids the gates were predicted for
    logits: Optional[torch.Tensor] = None  # (B, n_slots, 2) float32 (skip, keep) logits the gates came from
    predictor_s: float = 0.0  # host seconds the gate predictor took (its share of decoding time)
    budgets: Optional[torch.Tensor] = None  # (B, 2) (enc, dec) sparsity budgets given to a budgeted predictor

    def masks(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per utterance (enc, dec) binary dense masks, int, on the CPU."""
        enc, dec = (self.enc > 0.5).int().cpu(), (self.dec > 0.5).int().cpu()
        return list(zip(enc, dec, strict=True))


class GatedESPnetS2TModel(ESPnetS2TModel):
    """OWSM-style S2T model with context-aware module gates.

    Args (beyond ESPnetS2TModel's):
        gate_conf: which modules are gateable (``gate_encoder``, ``gate_decoder``,
            ``encoder_modules``, ``decoder_modules``, ``encoder_layers``,
            ``decoder_layers``) and the :class:`GatePredictor` options.
        sparsity_conf: :class:`SparsityController` options.
        distill_conf: distillation from the dense model (``espnet_gated.method.distill``), or None.

    Call :meth:`after_optimizer_update` after every optimizer step (``GatedS2TTask`` registers
    it on ESPnet's optimizer): it advances the gate schedules and the sparsity multipliers.
    """

    def __init__(
        self,
        *args,
        gate_conf: Optional[Dict] = None,
        sparsity_conf: Optional[Dict] = None,
        distill_conf: Optional[Dict] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if not isinstance(self.encoder, GatedEBranchformerEncoder):
            raise ValueError(
                f"model gated_espnet needs encoder: gated_e_branchformer, got {type(self.encoder).__name__}"
            )
        if not isinstance(self.decoder, GatedTransformerDecoder):
            raise ValueError(f"model gated_espnet needs decoder: gated_transformer, got {type(self.decoder).__name__}")
        gate_conf, sparsity_conf = check_gate_conf(gate_conf), check_sparsity_conf(sparsity_conf)
        layout_conf = {k: gate_conf.pop(k) for k in LAYOUT_KEYS if k in gate_conf}
        enc_present, dec_present = self.encoder.present_modules(), self.decoder.present_modules()
        gate_enc = layout_conf.get("gate_encoder", True)
        gate_dec = layout_conf.get("gate_decoder", True)
        self.gate_layout = GateLayout(
            n_enc_layers=len(self.encoder.encoders),
            n_dec_layers=len(self.decoder.decoders),
            enc_present=enc_present,
            dec_present=dec_present,
            enc_modules=layout_conf.get("encoder_modules", enc_present) if gate_enc else [],
            dec_modules=layout_conf.get("decoder_modules", dec_present) if gate_dec else [],
            enc_layers=layout_conf.get("encoder_layers"),
            dec_layers=layout_conf.get("decoder_layers"),
        )
        if len(self.gate_layout) == 0:
            raise ValueError("gate_conf gates no module: enable gate_encoder or gate_decoder")
        self.sparsity_controller = SparsityController(**sparsity_conf)
        self.gate_predictor = GatePredictor(
            n_gates=len(self.gate_layout),
            audio_dim=self.encoder.output_size(),
            token_list=self.token_list,
            budget_input=self.sparsity_controller.budgeted,
            **gate_conf,
        )
        self.distill_conf = check_distill_conf(distill_conf)
        self._teacher: Optional[Teacher] = None  # loaded on the first training forward (see distill.py)

    # ------------------------------------------------------------------ context
    def context_from_text(self, text: torch.Tensor, text_lengths: torch.Tensor, utt_ids=None) -> torch.Tensor:
        """(B, 2) ids of the ``<lang><task>`` prefix of each target text."""
        short = (text_lengths < 2).nonzero().flatten().tolist()
        if short:
            who = f"utterance '{utt_ids[short[0]]}'" if utt_ids else f"batch row {short[0]}"
            raise ValueError(f"{who}: text has no <lang><task> prefix")
        context = text[:, :2]
        self.gate_predictor.check_context(context, utt_ids)
        return context

    def token_context(self, lang_sym: str, task_sym: str, batch_size: int = 1) -> torch.Tensor:
        """(B, 2) context tensor for decoding with the given language and task symbols."""
        ids = []
        for sym in (lang_sym, task_sym):
            if sym not in self.token_list:
                raise ValueError(f"'{sym}' is not in the model's token list")
            ids.append(self.token_list.index(sym))
        context = torch.tensor([ids] * batch_size, device=next(self.parameters()).device)
        self.gate_predictor.check_context(context)
        return context

    def check_trained_context(self, context: torch.Tensor) -> None:
        """Raise ValueError if a language or task of ``context`` was never trained (its
        embedding is random: the gates would be too), naming the ones that were."""
        unseen = self.gate_predictor.unseen_context(context)
        if unseen:
            langs, tasks = self.gate_predictor.trained_contexts()
            raise ValueError(
                f"the gate predictor was never trained on {' '.join(unseen)}: its gates for it would be random. "
                f"Trained languages: {' '.join(langs)}; tasks: {' '.join(tasks)} "
                "(decode with --unseen_context all_open to keep every module for such utterances)"
            )

    def after_optimizer_update(self) -> None:
        """Advance the gate schedules and the sparsity multipliers by one optimizer update."""
        self.sparsity_controller.ascend()
        self.gate_predictor.count_update()

    # ------------------------------------------------------------------ gates
    def _expand(self, mask: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        mask = mask.to(device=like.device, dtype=like.dtype)
        return mask.expand(batch, *mask.shape[-2:]) if mask.dim() == 2 else mask

    def predict_gates(
        self,
        x: torch.Tensor,
        masks: torch.Tensor,
        context: Optional[torch.Tensor],
        enc_mask: Optional[torch.Tensor] = None,
        dec_mask: Optional[torch.Tensor] = None,
        budget: Optional[Tuple[float, float]] = None,
    ) -> GateState:
        """The gates of a batch from the encoder's embedded input ``x`` (B, T, D) and the masks of each
        utterance's own frames (B, 1, T), see gates.py. ``enc_mask`` (n_enc_layers, 4) or (B, ...) and
        ``dec_mask`` (n_dec_layers, 3) or (B, ...) replace the predicted gates of their side (binary,
        module order as in ``layout.py``): for analysis, benchmarks and decoding with every module open.
        A budgeted model (``sparsity_conf.budget``) takes ``budget``, the (encoder, decoder) skip rates asked
        for (``SparsityController.decode_budgets``); without it, training draws each utterance's and
        validation and decoding take the default.
        """
        start = time.perf_counter()
        predictor, controller = self.gate_predictor, self.sparsity_controller
        slots = logits = budgets = None
        warmup = predictor.warming_up()
        if enc_mask is None or dec_mask is None:
            pooled = masked_time_mean(x, masks) if predictor.use_audio else None
            if budget is not None and not controller.budgeted:
                raise ValueError("this model was trained without a sparsity budget: it decodes at its own sparsity")
            if controller.budgeted:
                if budget is not None:
                    budgets = controller.budget_tensor(tuple(budget), x.size(0), x.device)
                elif self.training:
                    budgets = controller.draw_budgets(x.size(0), x.device)
                else:
                    budgets = controller.default_budgets(x.size(0), x.device)
            logits = predictor(pooled, context, budget=budgets)
            slots = predictor.sample(logits)
            if budgets is not None and controller.weighting == "uniform" and not warmup:
                # a module count per utterance; with flops weighting a budget is a compute share, left to the predictor
                slots = self._hold(slots, logits, budgets)
        b = x.size(0)
        enc = self._expand(enc_mask, b, x) if enc_mask is not None else self.gate_layout.to_dense(slots, "enc")
        dec = self._expand(dec_mask, b, x) if dec_mask is not None else self.gate_layout.to_dense(slots, "dec")
        return GateState(
            slots=slots,
            enc=enc.to(x.dtype),
            dec=dec.to(x.dtype),
            frames=masks.squeeze(1).sum(1),
            warmup=warmup,
            context=context,
            logits=logits,
            predictor_s=time.perf_counter() - start,
            budgets=budgets,
        )

    def _hold(self, slots: torch.Tensor, logits: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
        """Gates held to each utterance's budget (``Budget.hold_gates``). In training too, to the ramped
        budget, straight-through (the held gates forward, the sampled gates' gradient back). Why: the backbone
        then learns with the masks decoding uses; held only at decoding, the hold closed modules the predictor
        had kept in training (the recipe's budget model: ST BLEU 79.7 at 0.75 against 81.2 held in training)."""
        controller = self.sparsity_controller
        if not self.training:
            return controller.budget.hold_gates(slots, logits, budgets, self.gate_layout)
        ramped = budgets * controller.ramp(self.gate_predictor.gating_updates())
        held = controller.budget.hold_gates(slots.detach(), logits.detach(), ramped, self.gate_layout)
        return slots + (held - slots).detach()

    # ------------------------------------------------------------------ model API
    def encode_gated(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        enc_mask: Optional[torch.Tensor] = None,
        dec_mask: Optional[torch.Tensor] = None,
        frontend: Optional[torch.nn.Module] = None,
        budget: Optional[Tuple[float, float]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, GateState]:
        """ESPnet's ``encode`` (frontend, normalisation, encoder) with the gates predicted for the batch;
        returns (encoder output, lengths, gates).

        context: (B, 2) ids of the language and task tokens (``token_context``); ``enc_mask``/``dec_mask``:
        see :meth:`predict_gates`; ``frontend``: replaces the model's for this call; ``budget``: the (encoder,
        decoder) sparsity asked of a budgeted model.
        """
        if context is None and self.gate_predictor.use_context and (enc_mask is None or dec_mask is None):
            raise ValueError(
                "the gated model needs the language and task of each utterance: call "
                "encode_gated(speech, lengths, context=model.token_context(lang_sym, task_sym)) "
                "or decode with espnet_gated.bin.s2t_inference"
            )
        predict = partial(self.predict_gates, context=context, enc_mask=enc_mask, dec_mask=dec_mask, budget=budget)
        return espnet_encode(self, speech, speech_lengths, predict, frontend)

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, context: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's ``encode`` signature (CTC alignment, ESPnet's tools) plus the context; the gates are
        those of :meth:`encode_gated`."""
        enc, enc_lens, _ = self.encode_gated(speech, speech_lengths, context)
        return enc, enc_lens

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        text_prev: torch.Tensor,
        text_prev_lengths: torch.Tensor,
        text_ctc: torch.Tensor,
        text_ctc_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's CTC + attention loss with the gates predicted for the batch's ``<lang><task>``
        prefixes, plus the sparsity loss; stats gain ``loss_sparsity``, ``sparsity_enc``,
        ``sparsity_dec`` and ``keep_*`` rates."""
        context = self.context_from_text(text, text_lengths, kwargs.get("utt_id"))
        loss, stats, weight, batch = espnet_forward(
            self,
            partial(self.predict_gates, context=context),
            speech=speech,
            speech_lengths=speech_lengths,
            text=text,
            text_lengths=text_lengths,
            text_prev=text_prev,
            text_prev_lengths=text_prev_lengths,
            text_ctc=text_ctc,
            text_ctc_lengths=text_ctc_lengths,
            **kwargs,
        )
        gates = batch.gates
        if self.distill_conf is not None and self.training and self.ctc_weight < 1.0:
            loss = loss + self._distillation(speech, speech_lengths, batch, stats)
        loss_sparsity, sparsity_stats = self.sparsity_terms(gates, loss, float(text_lengths.float().mean()) + 1)
        if not gates.warmup:
            loss = loss + loss_sparsity
        sparsity_stats["gate_tau"] = torch.tensor(self.gate_predictor.temperature())
        stats.update(force_gatherable(sparsity_stats, loss.device))
        stats["loss"] = loss.detach()
        return loss, stats, weight

    def _distillation(self, speech, speech_lengths, batch, stats: Dict) -> torch.Tensor:
        """What distillation adds to the loss: ``(1 - ctc_weight) * weight * loss_distill``."""
        conf = self.distill_conf
        if self._teacher is None:
            self._teacher = Teacher(conf["teacher_config"], conf["teacher_model"], speech.device, speech.dtype)
        ys_in_pad, ys_in_lens = batch.decoder_input
        teacher = self._teacher.logits(speech, speech_lengths, ys_in_pad, ys_in_lens)
        loss_distill = token_kl(
            batch.decoder_logits,
            teacher,
            ys_in_pad,
            ys_in_lens,
            self.sos,
            conf["temperature"],
            self.criterion_att.normalize_length,
        )
        stats["loss_distill"] = loss_distill.detach()
        return (1.0 - self.ctc_weight) * conf["weight"] * loss_distill

    def sparsity_terms(self, gates: GateState, task_loss: torch.Tensor, decoder_steps: float):
        """The controller's loss and statistics for the gates of a batch (in training the
        batch's gap is recorded for the next multiplier update unless the gates warm up)."""
        controller = self.sparsity_controller
        groups = None
        if controller.tasks:  # per-task targets: each utterance's task
            groups = controller.groups_of([self.token_list[int(t)][1:-1] for t in gates.context[:, 1]])
        costs = None
        if controller.weighting == "flops":
            costs = slot_costs(self, self.gate_layout.slots, float(gates.frames.float().mean()), decoder_steps)
        return controller.loss(
            self.gate_layout,
            gates.slots,
            gates.logits,
            task_loss,
            self.gate_predictor.gating_updates(),
            slot_costs=costs,
            record=self.training and not gates.warmup,
            groups=None if groups is None else groups.to(gates.slots.device),
            budgets=gates.budgets,
        )
