"""The one bridge between values (gates, masks) and ESPnet's fixed signatures.

The gated model passes its gates as arguments and return values. Three ESPnet entry points have
no room for them, and each is met here, by an object that lives for one call and is then dropped
(nothing is set on the model, the encoder, the decoder or ESPnet's beam search):

* ``ESPnetS2TModel.forward`` and ``.encode`` (the trainer's loss, CTC, interCTC, statistics) call
  ``self.encode`` -> ``self.encoder(feats, lengths)`` and ``self._calc_att_loss`` ->
  ``self.decoder(...)``. :func:`espnet_forward` and :func:`espnet_encode` run ESPnet's own
  methods on :class:`OneBatch`, a view of the model whose encoder predicts this batch's gates
  from its input layer's output and whose decoder runs with them; they return the gates (and, for
  distillation, the decoder's output).
* ESPnet's beam search calls ``batch_score(ys, states, xs)`` of its scorers:
  :class:`GatedDecoderScorer` is the gated decoder with the masks of the utterances of one search.
* :func:`bound_search` is an ESPnet beam search for one search: its decoder scorer bound to the
  masks, its primer set, on a copy (ESPnet sets the primer on the search object); its CTC scorer is
  :class:`PromptCTCScorer`.

CTC prefix scoring leaves out the decoding prompt. An S2T (OWSM) search starts from a primer,
``<sos><lang><task><notimestamps>`` (after ``<sop>`` and a previous text, if any). The CTC never emits the
prompt (it learns ``text.ctc``, the plain transcript). ESPnet 202511's ``CTCPrefixScorer`` takes every token
after the primer's first as CTC output, the prompt included, so the best CTC path spends the first frames on
it and the joint score favours hypotheses that drop the first words: on the default recipe's test sets,
``ctc_weight: 0.3`` raised the WER from 38 to 50%, where CTC alone, greedy, gives 21%. ESPnet 202611's search
strips the primer itself (PR #6599). :class:`PromptCTCScorer` strips it on both releases.
"""

import copy
import inspect
from typing import Callable, Optional

import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel

from espnet_gated.compat import BatchPartialScorerInterface, BatchScorerInterface, CTCPrefixScorer, make_pad_mask

#: ``predict_gates(x, own_masks) -> GateState`` (see ``GatedEBranchformerEncoder.forward``)
GatePrediction = Callable[[torch.Tensor, torch.Tensor], object]


class _GatingEncoder:
    """The encoder as ESPnet's ``encode`` calls it for one batch: its input layer, the gates, its layers.
    The gate state is kept for the view that made it."""

    def __init__(self, encoder, view: "OneBatch"):
        self._encoder = encoder
        self._view = view

    def __call__(self, xs_pad, ilens, ctc=None):
        out, olens, self._view.gates = self._encoder(xs_pad, ilens, ctc=ctc, predict_gates=self._view.predict_gates)
        return out, olens, None

    def __getattr__(self, name):
        return getattr(self._encoder, name)


class OneBatch:
    """The model as ESPnet's ``ESPnetS2TModel`` methods see it during one call: those methods run
    unchanged with ``self`` = this view; ``encoder`` predicts the batch's gates, ``decoder`` runs with
    them, ``frontend`` may be replaced; every other attribute is the model's. After the call it holds
    what the call computed: ``gates``, and the teacher-forced decoder's input (``decoder_input``:
    (ys_in_pad, ys_in_lens)) and output (``decoder_logits``)."""

    def __init__(self, model, predict_gates: Optional[GatePrediction], frontend: Optional[torch.nn.Module] = None):
        self._model = model
        self.predict_gates = predict_gates
        self.gates = None
        self.decoder_input = self.decoder_logits = None
        if predict_gates is not None:  # else the model's own encoder (an exported model's static mask)
            self.encoder = _GatingEncoder(model.encoder, self)
        if frontend is not None:
            self.frontend = frontend

    def decoder(self, hs_pad, hlens, ys_in_pad, ys_in_lens, **kwargs):
        out = self._model.decoder(hs_pad, hlens, ys_in_pad, ys_in_lens, gates=self.gates.dec, **kwargs)
        self.decoder_input, self.decoder_logits = (ys_in_pad, ys_in_lens), out[0]
        return out

    def __getattr__(self, name):
        stock = inspect.getattr_static(ESPnetS2TModel, name, None)
        if inspect.isfunction(stock):
            return stock.__get__(self)
        return getattr(self._model, name)


def espnet_encode(model, speech, speech_lengths, predict_gates: Optional[GatePrediction], frontend=None):
    """ESPnet's ``encode`` (features, SpecAugment, normalisation, encoder) with predicted gates (None:
    the model's encoder as it is); returns (encoder output, lengths, gate state or None)."""
    view = OneBatch(model, predict_gates, frontend)
    enc, enc_lens = view.encode(speech, speech_lengths)
    return enc, enc_lens, view.gates


def espnet_forward(model, predict_gates: GatePrediction, **batch):
    """ESPnet's ``forward`` (CTC, interCTC and attention losses, statistics) with predicted gates in the
    encoder and the decoder; returns (loss, stats, weight, the call's :class:`OneBatch`: its gates, the
    decoder's input and output)."""
    view = OneBatch(model, predict_gates)
    loss, stats, weight = view.forward(**batch)
    return loss, stats, weight, view


class GatedDecoderScorer(BatchScorerInterface):
    """The gated decoder as a scorer of ESPnet's beam search, for one search of ``U`` utterances.

    Args:
        decoder: a ``GatedTransformerDecoder``.
        memory: the encoder output searched, (T, D) or (U, T, D) padded.
        memory_lengths: (U,) valid frames of a padded batch, or None.
        masks: (U, n_layers, 3) decoder gate masks, one per utterance, or None (all open, or
            the decoder's static mask).

    The search's rows come in ``U`` blocks of equal size (ESPnet's utterance-major layout); each
    block runs its utterance's mask and attends to its cross-attention keys/values, projected
    once for the search.
    """

    def __init__(self, decoder, memory: torch.Tensor, memory_lengths=None, masks: Optional[torch.Tensor] = None):
        self.decoder = decoder
        memory = memory.unsqueeze(0) if memory.dim() == 2 else memory
        mask = None
        if memory_lengths is not None and bool((memory_lengths < memory.size(1)).any()):
            mask = (~make_pad_mask(memory_lengths, maxlen=memory.size(1)))[:, None, :].to(memory.device)
        self.memory_kv = decoder.cross_attention_cache(memory, mask)
        if masks is not None and masks.size(0) != memory.size(0):
            raise ValueError(f"{masks.size(0)} decoder masks for {memory.size(0)} utterances")
        self.masks = masks

    def init_state(self, x):
        return None

    def batch_init_state(self, x, **kwargs):
        return None

    def select_state(self, state, i, new_id=None):
        return self.decoder.select_state(state, i, new_id)

    def score(self, ys, state, x):
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), states[0]

    def batch_score(self, ys, states, xs, return_hs: bool = False, xs_mask=None):
        gates = self.masks
        if gates is not None and gates.size(0) > 1:
            gates = gates.repeat_interleave(ys.size(0) // gates.size(0), dim=0)
        return self.decoder.batch_score(
            ys, states, xs, return_hs=return_hs, xs_mask=xs_mask, gates=gates, memory_kv=self.memory_kv
        )


def bound_search(beam_search, decoder_scorer: GatedDecoderScorer, primer):
    """A copy of ESPnet's (batch) beam search that searches with ``decoder_scorer`` from ``primer`` (one
    token list, or one per utterance of equal length); its CTC scorer scores only what follows the primer,
    in float32 (:class:`espnet_gated.adapter.PromptCTCScorer`)."""
    search = copy.copy(beam_search)
    search.__dict__.pop("_xs_mask_support", None)  # 202611's cache of which scorers take xs_mask
    replaced = {"decoder": decoder_scorer}
    ctc = beam_search.scorers.get("ctc")
    if isinstance(ctc, CTCPrefixScorer):
        one = primer[0] if isinstance(primer[0], (list, tuple)) else primer
        replaced["ctc"] = PromptCTCScorer(ctc, len(one))
    for name in ("scorers", "full_scorers", "part_scorers"):
        scorers = getattr(beam_search, name)
        search.__dict__[name] = {k: replaced.get(k, v) for k, v in scorers.items()}
    search.set_hyp_primer(primer)
    return search


class PromptCTCScorer(BatchPartialScorerInterface):
    """ESPnet's CTC prefix scorer (``scorer``) for one search from a primer of ``primer_length``
    tokens: the primer's last token stands in the place of ``<sos>``, and CTC is computed in float32
    also under half-precision autocast. Anything else is the wrapped scorer's."""

    def __init__(self, scorer, primer_length: int):
        self.scorer = scorer
        self.primer_length = primer_length

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def init_state(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return self.scorer.init_state(x)

    def batch_init_state(self, x, xs_lengths=None):
        extra = {} if xs_lengths is None else {"xs_lengths": xs_lengths}  # 202611's padded batches
        with torch.autocast(x.device.type, enabled=False):
            return self.scorer.batch_init_state(x, **extra)

    def select_state(self, state, i, new_id=None):
        return self.scorer.select_state(state, i, new_id)

    def score_partial(self, y, ids, state, x):
        return self.scorer.score_partial(y[..., self.primer_length - 1 :], ids, state, x)

    def batch_score_partial(self, y, ids, state, x):
        return self.scorer.batch_score_partial(y[..., self.primer_length - 1 :], ids, state, x)


#: tokens of the S2T prompt without a previous text or timestamps: <sos> <lang> <task> <notimestamps>
PROMPT_LENGTH = 4


def use_prompt_ctc(beam_search, primer_length: int = PROMPT_LENGTH) -> None:
    """Make ESPnet's own beam search (a stock ``Speech2Text``'s: the dense references of the benchmark
    and the tests) score CTC as the gated decoding does, for primers of ``primer_length`` tokens."""
    ctc = beam_search.scorers.get("ctc")
    if ctc is None or isinstance(ctc, PromptCTCScorer):
        return
    wrapped = PromptCTCScorer(ctc, primer_length)
    for scorers in (beam_search.scorers, beam_search.part_scorers, beam_search.full_scorers):
        if "ctc" in scorers:
            scorers["ctc"] = wrapped
