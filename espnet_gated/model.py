"""The gated OWSM model (``model: gated_espnet``).

ESPnet's :class:`ESPnetS2TModel` plus a gate predictor and the sparsity loss. The dense
model's code paths are reused: ``encode`` and ``_calc_att_loss`` of the parent run
unchanged while the gates for the batch are installed in the encoder and the decoder.

Where the context comes from:

* training/validation: the first two tokens of ``text`` (``<lang><task>``);
* inference: ``encode(speech, lengths, context=...)`` with the ids of ``lang_sym`` and
  ``task_sym`` (done by :class:`espnet_gated.inference.GatedSpeech2Text`).

After every ``encode`` the gates used for that batch are in ``model.current_gates``.
"""

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_gated.decoder import GatedTransformerDecoder
from espnet_gated.encoder import GatedEBranchformerEncoder
from espnet_gated.flops import slot_costs
from espnet_gated.gates import GatePredictor, masked_time_mean
from espnet_gated.layout import GateLayout
from espnet_gated.sparsity import SparsityController

#: state-dict prefixes of the gating state: what a dense (ESPnet, OWSM) checkpoint lacks
GATING_STATE = ("gate_predictor.", "sparsity_controller.")
#: gate_conf keys that choose the gated slots (the rest configure the predictor)
LAYOUT_KEYS = ("gate_encoder", "gate_decoder", "encoder_modules", "decoder_modules", "encoder_layers", "decoder_layers")


def _options(cls, skip=()) -> List[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *skip)]


def check_gate_conf(gate_conf: Optional[Dict]) -> Dict:
    """A copy of ``model_conf.gate_conf``; ValueError for unknown keys or ill-typed values."""
    conf = dict(gate_conf or {})
    known = list(LAYOUT_KEYS) + _options(GatePredictor, skip=("n_gates", "audio_dim", "token_list"))
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
    """Gates of the last encoded batch."""

    slots: Optional[torch.Tensor]  # (B, n_slots) float32 predicted gates (sampled in training), None when forced
    enc: torch.Tensor  # (B, n_enc_layers, 4), ungated = 1, in the dtype of the encoder's activations
    dec: torch.Tensor  # (B, n_dec_layers, 3), ungated = 1, same dtype
    frames: torch.Tensor  # (B,) valid encoder frames
    warmup: bool = False  # predicted during the gate warm-up (all open, no sparsity loss)
    context: Optional[torch.Tensor] = None  # (B, 2) the <lang><task> ids the gates were predicted for
    logits: Optional[torch.Tensor] = None  # (B, n_slots, 2) float32 (skip, keep) logits the gates came from


class GatedESPnetS2TModel(ESPnetS2TModel):
    """OWSM-style S2T model with context-aware module gates.

    Args (beyond ESPnetS2TModel's):
        gate_conf: which modules are gateable (``gate_encoder``, ``gate_decoder``,
            ``encoder_modules``, ``decoder_modules``, ``encoder_layers``,
            ``decoder_layers``) and the :class:`GatePredictor` options.
        sparsity_conf: :class:`SparsityController` options.

    Call :meth:`after_optimizer_update` after every optimizer step (``GatedS2TTask`` registers
    it on ESPnet's optimizer): it advances the gate schedules and the sparsity multipliers.
    """

    def __init__(self, *args, gate_conf: Optional[Dict] = None, sparsity_conf: Optional[Dict] = None, **kwargs):
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
        self.gate_predictor = GatePredictor(
            n_gates=len(self.gate_layout),
            audio_dim=self.encoder.output_size(),
            token_list=self.token_list,
            **gate_conf,
        )
        self.sparsity_controller = SparsityController(**sparsity_conf)
        self.current_gates: Optional[GateState] = None
        self._batch_context = None  # (B, 2) context set by using_context()
        self._forced = None  # (enc, dec) dense masks from forced_gates()
        self._feat_lengths = None  # (B,) feature frames of the batch being encoded

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

    @contextmanager
    def using_context(self, context: torch.Tensor):
        """Inside the block, ``encode`` without ``context`` uses this (B, 2) context."""
        previous = self._batch_context
        self._batch_context = context
        try:
            yield
        finally:
            self._batch_context = previous

    # ------------------------------------------------------------------ gates
    @contextmanager
    def forced_gates(self, enc: Optional[torch.Tensor] = None, dec: Optional[torch.Tensor] = None):
        """Override the predicted gates (for analysis and benchmarks).

        enc: (n_enc_layers, 4) or (B, n_enc_layers, 4); dec: (n_dec_layers, 3) or
        (B, n_dec_layers, 3); binary, module order as in ``layout.py``. A side left None
        keeps the predicted gates.
        """
        previous = self._forced
        self._forced = (enc, dec)
        try:
            yield
        finally:
            self._forced = previous

    def _expand(self, mask: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        mask = mask.to(device=like.device, dtype=like.dtype)
        return mask.expand(batch, *mask.shape[-2:]) if mask.dim() == 2 else mask

    def predict_gates(self, xs, masks: torch.Tensor, context: Optional[torch.Tensor]) -> GateState:
        """Gates for a batch from the embedded encoder input (see gates.py)."""
        x = xs[0] if isinstance(xs, tuple) else xs
        forced_enc, forced_dec = self._forced if self._forced is not None else (None, None)
        predictor = self.gate_predictor
        slots = logits = None
        warmup = predictor.warming_up()
        if forced_enc is None or forced_dec is None:
            pooled = masked_time_mean(x, self._own_frames(masks)) if predictor.use_audio else None
            logits = predictor(pooled, context)
            slots = predictor.sample(logits)
        b = x.size(0)
        enc = self._expand(forced_enc, b, x) if forced_enc is not None else self.gate_layout.to_dense(slots, "enc")
        dec = self._expand(forced_dec, b, x) if forced_dec is not None else self.gate_layout.to_dense(slots, "dec")
        return GateState(
            slots=slots,
            enc=enc.to(x.dtype),
            dec=dec.to(x.dtype),
            frames=masks.squeeze(1).sum(1),
            warmup=warmup,
            context=context,
            logits=logits,
        )

    def _own_frames(self, masks: torch.Tensor) -> torch.Tensor:
        """``masks`` without the frames that only exist because of padding.

        In training, ESPnet's subsampling slices the padded batch's mask, so a shorter
        utterance gets one or two extra "valid" frames whose convolution windows reach into
        the padding; alone it would not have them (at inference the encoder's masks hold
        each utterance's own frames already). The gate predictor pools over the frames the
        utterance has on its own, so its gates do not depend on what it is batched with
        (exactly at inference, where ``GatedSpeech2Text`` also computes each utterance's
        features alone; in training ESPnet's batched STFT reads padding into the last frame
        of a shorter utterance, which shifts an ``utterance_mvn`` mean by a little).
        """
        if self._feat_lengths is None:
            return masks
        own = self.encoder.own_lengths(self._feat_lengths).to(masks.device)
        positions = torch.arange(masks.size(-1), device=masks.device)
        return masks & (positions < own.unsqueeze(1)).unsqueeze(1)

    # ------------------------------------------------------------------ model API
    def _extract_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's feature extraction; remembers the feature lengths for :meth:`_own_frames`."""
        feats, feats_lengths = super()._extract_feats(speech, speech_lengths)
        self._feat_lengths = feats_lengths
        return feats, feats_lengths

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        context: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + gated encoder; the gates end up in ``self.current_gates``.

        context: (B, 2) ids of the language and task tokens; inside ``forward`` it is
        read from the target text.
        """
        if context is None and self._batch_context is not None:
            context = self._batch_context
        if context is None and self.gate_predictor.use_context and self._forced is None:
            raise ValueError(
                "the gated model needs the language and task of each utterance: call "
                "encode(speech, lengths, context=model.token_context(lang_sym, task_sym)) "
                "or decode with espnet_gated.bin.s2t_inference"
            )

        def gate_source(xs, masks):
            self.current_gates = self.predict_gates(xs, masks, context)
            return self.current_gates.enc

        self._feat_lengths = None  # set by _extract_feats for this batch
        try:
            with self.encoder.gate_source(gate_source):
                return super().encode(speech, speech_lengths)
        finally:
            self._feat_lengths = None

    def _calc_att_loss(self, *args, **kwargs):
        with self.decoder.installed_gates(self.current_gates.dec):
            return super()._calc_att_loss(*args, **kwargs)

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
        """ESPnet's CTC + attention loss plus the sparsity loss; stats gain
        ``loss_sparsity``, ``sparsity_enc``, ``sparsity_dec`` and ``keep_*`` rates."""
        context = self.context_from_text(text, text_lengths, kwargs.get("utt_id"))
        with self.using_context(context):
            loss, stats, weight = super().forward(
                speech,
                speech_lengths,
                text,
                text_lengths,
                text_prev,
                text_prev_lengths,
                text_ctc,
                text_ctc_lengths,
                **kwargs,
            )
        gates = self.current_gates
        if gates.slots is None:  # forced gates: nothing to regularise
            return loss, stats, weight
        loss_sparsity, sparsity_stats = self.sparsity_terms(gates, loss, float(text_lengths.float().mean()) + 1)
        if not gates.warmup:
            loss = loss + loss_sparsity
        sparsity_stats["gate_tau"] = torch.tensor(self.gate_predictor.temperature())
        stats.update(force_gatherable(sparsity_stats, loss.device))
        stats["loss"] = loss.detach()
        return loss, stats, weight

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
        )

    # ------------------------------------------------------------------ reporting
    def gate_masks(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per utterance (enc, dec) binary dense masks of the last encoded batch."""
        g = self.current_gates
        return [((g.enc[i] > 0.5).int().cpu(), (g.dec[i] > 0.5).int().cpu()) for i in range(g.enc.size(0))]
