"""Decoding with gates: ESPnet's ``Speech2Text`` (its model building, beam search, scorers and results), told the
context. What :class:`GatedSpeech2Text` changes:

* each utterance is encoded with its ``<lang><task>`` context, and its gate mask goes to its beam search as a value
  (:mod:`espnet_gated.adapter`); ``decode``/``decode_batch`` return a :class:`~.results.Decoding` (n-best lists,
  masks, identified languages, budget, timing), ``__call__`` ESPnet's n-best list;
* ``decode_batch``: several utterances at once, sorted by length, encoder and search batched
  (:mod:`espnet_gated.decoding.search`), each with what it gets alone;
* ``speech_length: null`` (no padding to a fixed length); exported models (a static mask); CTC scoring without
  the prompt on both ESPnet releases; the weights file checked against the model (``plugin.weights``);
  ``from_pretrained`` of a directory, a pack or a hub name; ``lang_sym="none"``
  (:mod:`espnet_gated.decoding.language_id`); a sparsity budget for a budgeted model;
* ``dtype: bfloat16|float16`` decodes under autocast over float32 weights; the frontend, the input layer, the gate
  predictor, CTC, the log-probabilities and the beam scores stay float32 (the gates of float32 decoding).
"""

import logging
import time
from contextlib import nullcontext
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.adapter import GatedDecoderScorer, bound_search, espnet_encode
from espnet_gated.compat import SEARCH_BATCHES_UTTERANCES, pad_list
from espnet_gated.decoding.features import UtteranceWiseFrontend
from espnet_gated.decoding.language_id import candidate_languages, rank_languages, wants_identification
from espnet_gated.decoding.results import Decoding, Mask, nbest_results
from espnet_gated.decoding.search import MultiUtteranceBeamSearch, outruns_ctc
from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES
from espnet_gated.method.model import GatedESPnetS2TModel, GateState
from espnet_gated.method.pruning import is_exported, refuse_gates
from espnet_gated.method.sparsity import BudgetRequestError
from espnet_gated.plugin.registry import register
from espnet_gated.plugin.weights import WeightsError, check_weights, load_errors

register()  # ESPnet's Speech2Text builds the model through S2TTask's class choices

#: gate_mode values: the gate predictor's masks, or every module kept (the dense model
#: computed by the gated code, e.g. the reference of a sparsity sweep)
GATE_MODES = ("predicted", "all_open")
#: unseen_context values: for a language or task the gate predictor never trained on (its
#: embedding is random, and so would its gates be), refuse to decode, or keep every module
UNSEEN_CONTEXT = ("error", "all_open")

#: GatedSpeech2Text's options beyond ESPnet's Speech2Text's
GATED_OPTIONS = ("gate_mode", "unseen_context", "sparsity", "enc_sparsity", "dec_sparsity")
#: decoding dtypes: the first two cast the model (ESPnet's ``dtype``), the others decode under autocast
DTYPES = ("float32", "float64", "bfloat16", "float16")
HALF_DTYPES = ("bfloat16", "float16")
#: decode_batch's searches: ours (:mod:`espnet_gated.decoding.search`), or ESPnet's (utterance-batched on 202611,
#: one utterance at a time on 202511), which takes any of ESPnet's scorers (a language model, ...)
SEARCHES = ("ours", "espnet")
#: on a CPU the encoder batches utterances at most this much shorter than the batch's longest
#: (padding 10%; see ``GatedSpeech2Text._decode_padded``)
CPU_ENCODER_MAX_PADDING = 0.1


class GatedSpeech2Text(Speech2Text):
    """ESPnet's ``Speech2Text`` for gated models (module docstring); beyond its options: ``gate_mode``,
    ``unseen_context``, ``dtype`` (half precision under autocast), and for a model trained with a range of
    sparsity budgets (``sparsity_conf.budget``) the skip rate to decode at: ``sparsity`` (every budgeted side),
    ``enc_sparsity``, ``dec_sparsity`` (one side); each call may ask for another."""

    def __init__(
        self,
        *args,
        gate_mode: str = "predicted",
        unseen_context: str = "error",
        dtype: str = "float32",
        sparsity=None,
        enc_sparsity=None,
        dec_sparsity=None,
        **kwargs,
    ):
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got '{gate_mode}'")
        if unseen_context not in UNSEEN_CONTEXT:
            raise ValueError(f"unseen_context must be one of {UNSEEN_CONTEXT}, got '{unseen_context}'")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got '{dtype}'")
        if kwargs.get("partial_ar"):
            raise NotImplementedError("partial_ar decoding is not supported for gated models")
        self.unseen_context = unseen_context
        model_file = kwargs.get("s2t_model_file", args[1] if len(args) > 1 else None)
        config_file = kwargs.get("s2t_train_config", args[0] if args else None)
        #: half precision: autocast over float32 weights (None: ESPnet's dtype handling)
        self.autocast_dtype = getattr(torch, dtype) if dtype in HALF_DTYPES else None
        device_type = torch.device(kwargs.get("device", "cpu")).type
        if dtype == "float16" and device_type == "cpu":
            logging.warning("dtype float16 on a CPU runs emulated and is slower than float32: use bfloat16")
        try:
            super().__init__(*args, dtype="float32" if self.autocast_dtype else dtype, **kwargs)
        except RuntimeError as e:
            if "state_dict" not in str(e):
                raise
            raise ValueError(
                f"{model_file}: the weights do not fit the model built from {config_file} "
                f"(an exported model must be decoded with its own config.yaml): {load_errors(e)}"
            ) from None
        self.gate_mode = gate_mode
        model = self.s2t_model
        self.exported = is_exported(model)
        if not isinstance(model, GatedESPnetS2TModel) and not self.exported:
            raise ValueError(
                f"{type(model).__name__} is not a gated model (model: gated_espnet) nor an exported one; "
                "decode it with espnet2.bin.s2t_inference"
            )
        if self.exported and gate_mode != "predicted":
            raise ValueError("an exported model has a fixed mask: gate_mode all_open needs the gated model")
        if model_file is not None:
            try:
                check_weights(model, model_file, config_file)
            except WeightsError as e:
                raise ValueError(f"{e} (an exported model must be decoded with its own config.yaml)") from None
        self.natural_length = self.preprocessor_conf.get("speech_length") is None
        #: the sparsity asked for when a call asks for none
        self.sparsity = {"sparsity": sparsity, "enc_sparsity": enc_sparsity, "dec_sparsity": dec_sparsity}
        self.budget(**self.sparsity)  # a bad request fails here, before any audio is read
        #: the (enc, dec) mask that keeps every module (None for an exported model)
        self.every_module: Optional[Mask] = None
        if not self.exported:
            layout = model.gate_layout
            self.every_module = (
                torch.ones(layout.n_layers["enc"], len(ENCODER_MODULES)),
                torch.ones(layout.n_layers["dec"], len(DECODER_MODULES)),
            )

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, cache_dir=None, **kwargs) -> "GatedSpeech2Text":
        """The gated decoder of a model directory (an ``exp/<tag>`` training dir, an exported
        model, an unpacked pack), a packed model (``.zip``: unpacked once next to it, or under
        ``cache_dir``) or a Hugging Face hub name (needs ``pip install "espnet-gated[hub]"``).

        ``kwargs`` are the constructor's (``beam_size``, ``lang_sym``, ``device``, ...);
        ``s2t_train_config``/``s2t_model_file`` choose among several in the directory.
        Without ``model_tag`` it is the constructor itself, as ESPnet's ``from_pretrained``.
        """
        if model_tag is None:
            return cls(**kwargs)
        from espnet_gated.sharing.locate import PretrainedError, fetch, locate, resolved_config_file

        try:
            root = fetch(model_tag, cache_dir, option="from_pretrained(DIR)")
            pre = locate(root, kwargs.pop("s2t_train_config", None), kwargs.pop("s2t_model_file", None))
        except PretrainedError as e:
            raise ValueError(f"from_pretrained('{model_tag}'): {e}") from None
        with resolved_config_file(pre) as config_file:
            return cls(s2t_train_config=str(config_file), s2t_model_file=str(pre.model_file), **kwargs)

    # ------------------------------------------------------------------ encoding
    def _autocast(self):
        """Half-precision decoding (``dtype: bfloat16|float16``), else nothing."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.autocast_dtype)

    def _prepare(self, speech) -> torch.Tensor:
        """Speech2Text's input handling: 1-D, padded or trimmed to ``speech_length`` (its own length
        with ``speech_length: null``)."""
        if isinstance(speech, np.ndarray):
            speech = torch.tensor(speech)
        if speech.dim() > 1:
            if not (speech.dim() == 2 and speech.size(1) == 1):
                raise ValueError(f"speech of size {tuple(speech.size())} is not supported (mono audio only)")
            speech = speech.squeeze(1)
        n = self.prepared_length(speech)
        speech = speech[:n] if speech.size(-1) >= n else F.pad(speech, (0, n - speech.size(-1)))
        return speech.to(getattr(torch, self.dtype))

    def prepared_length(self, speech) -> int:
        """The samples an utterance (``(n,)`` or ``(n, 1)``) is decoded with: ``speech_length`` seconds, its own
        length with ``speech_length: null``; :meth:`decode_batch` sorts its utterances by it."""
        if self.natural_length:
            return len(speech)
        return int(self.preprocessor_conf["fs"] * self.preprocessor_conf["speech_length"])

    def _opens_all(self, lang_sym: str, task_sym: str) -> bool:
        """Whether an utterance of this context keeps every module: ``gate_mode: all_open``, or a
        language or task the predictor never trained on with ``unseen_context: all_open``
        (ValueError naming it and the trained ones with ``unseen_context: error``)."""
        if self.exported:
            return False
        if self.gate_mode == "all_open":
            return True
        model = self.s2t_model
        context = model.token_context(lang_sym, task_sym)
        unseen = model.gate_predictor.unseen_context(context)
        if not unseen:
            return False
        if self.unseen_context == "error":
            model.check_trained_context(context)
        logging.warning(f"{' '.join(unseen)}: never seen by the gate predictor in training; every module is kept")
        return True

    def budget(self, sparsity=None, enc_sparsity=None, dec_sparsity=None) -> Optional[Tuple[float, float]]:
        """The (encoder, decoder) sparsity budget to decode at: what is asked (else the constructor's ``sparsity``
        options), checked against the range the model was trained on; None for a model without a budget asked
        for none (ValueError, one line, for anything else)."""
        asked = {"sparsity": sparsity, "enc_sparsity": enc_sparsity, "dec_sparsity": dec_sparsity}
        if all(v is None for v in asked.values()):
            asked = self.sparsity
        if self.exported:
            if any(v is not None for v in asked.values()):
                raise BudgetRequestError("an exported model has a fixed mask: it decodes at its own sparsity only")
            return None
        return self.s2t_model.sparsity_controller.decode_budgets(**asked)

    def _encode(
        self,
        prepared: Sequence[torch.Tensor],
        langs: Sequence[str],
        tasks: Sequence[str],
        masks: Optional[Mask],
        budget: Optional[Tuple[float, float]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[GateState]]:
        """Encode prepared utterances as one padded batch, each with the features computed alone
        (:class:`UtteranceWiseFrontend`); returns (encoder output, lengths, gates; None for an
        exported model, whose masks are static). ``masks``: (enc, dec) instead of the predicted ones."""
        model = self.s2t_model
        speech = pad_list(list(prepared), 0.0).to(self.device)
        lengths = torch.tensor([s.numel() for s in prepared], device=self.device)
        frontend = None if model.frontend is None else UtteranceWiseFrontend(model.frontend)
        with self._autocast():
            if self.exported:
                refuse_gates("model", model.encoder.static_mask, masks)
                enc, enc_lens, gates = espnet_encode(model, speech, lengths, None, frontend)
            elif masks is not None:
                enc, enc_lens, gates = model.encode_gated(speech, lengths, None, *masks, frontend=frontend)
            else:
                context = torch.cat([model.token_context(lang, task) for lang, task in zip(langs, tasks, strict=True)])
                enc, enc_lens, gates = model.encode_gated(speech, lengths, context, frontend=frontend, budget=budget)
        return (enc[0] if isinstance(enc, tuple) else enc), enc_lens, gates

    def _masks(self, gates: Optional[GateState], n: int) -> List[Mask]:
        if gates is not None:
            return gates.masks()
        model = self.s2t_model
        return [((model.encoder.static_mask > 0.5).int(), (model.decoder.static_mask > 0.5).int())] * n

    @torch.no_grad()
    def encode_batch(
        self,
        speeches: Sequence[Union[torch.Tensor, np.ndarray]],
        lang_sym: Union[str, Sequence[str], None] = None,
        task_sym: Union[str, Sequence[str], None] = None,
        masks: Optional[Mask] = None,
    ) -> Tuple[List[torch.Tensor], List[Mask]]:
        """Encode utterances as one padded batch; returns per utterance its encoder output
        (T, D) and its (enc, dec) gate mask, each the one it gets alone (the encoder masks its
        padding, see ``espnet_gated.method.encoder``). ``masks``: (enc, dec) instead of the predicted ones."""
        langs, tasks = self._symbols(lang_sym, task_sym, len(speeches))
        prepared = [self._prepare(s) for s in speeches]
        enc, enc_lens, gates = self._encode(prepared, langs, tasks, masks, self.budget())
        encs = [enc[j, :n] for j, n in enumerate(enc_lens.tolist())]  # one sync: the encoder has run
        return encs, self._masks(gates, len(speeches))

    # ------------------------------------------------------------------ language identification
    @torch.no_grad()
    def identify_language(
        self, speeches: Sequence[Union[torch.Tensor, np.ndarray]], task_sym: Optional[str] = None, **sparsity
    ) -> List[List[Tuple[str, float]]]:
        """Per utterance, :func:`~espnet_gated.decoding.language_id.candidate_languages` with their
        probabilities, best first, under the gates of the budget asked (:meth:`budget`; :mod:`.language_id`)."""
        return self._ranked_languages(speeches, task_sym, self.budget(**sparsity))

    def _ranked_languages(self, speeches, task_sym: Optional[str], budget) -> List[List[Tuple[str, float]]]:
        model = self.s2t_model
        task_sym = task_sym if task_sym is not None else self.task_sym
        candidates = candidate_languages(model)
        if not candidates:
            raise ValueError("language identification: the model's token list has no language tokens")
        rows = 1 if self.exported else len(candidates)  # an exported model has one mask for every language
        out = []
        for speech in speeches:
            prepared = [self._prepare(speech)] * rows
            masks = self.every_module if self.gate_mode == "all_open" else None
            enc, enc_lens, gates = self._encode(prepared, candidates[:rows], [task_sym] * rows, masks, budget)
            out.append(rank_languages(model, enc, enc_lens, None if gates is None else gates.dec, candidates))
        return out

    def _identified(self, speeches, langs: List[str], tasks: List[str], budget) -> Tuple[List[str], list]:
        """``langs``, each ``none`` replaced by the language identified at ``budget``; (langs, identified or None)."""
        asked = [i for i, lang in enumerate(langs) if wants_identification(lang)]
        found: List[Optional[str]] = [None] * len(langs)
        for i in asked:
            found[i] = self._ranked_languages([speeches[i]], tasks[i], budget)[0][0][0]
        return [found[i] or lang for i, lang in enumerate(langs)], found

    # ------------------------------------------------------------------ decoding
    def _symbols(self, lang_sym, task_sym, n: int) -> Tuple[List[str], List[str]]:
        """One language and task symbol per utterance (from one for all, or a list, or the defaults)."""
        langs = [lang_sym or self.lang_sym] * n if lang_sym is None or isinstance(lang_sym, str) else list(lang_sym)
        tasks = [task_sym or self.task_sym] * n if task_sym is None or isinstance(task_sym, str) else list(task_sym)
        if len(langs) != n or len(tasks) != n:
            raise ValueError(f"{n} utterances but {len(langs)} lang_sym and {len(tasks)} task_sym")
        return langs, tasks

    def _primer(self, lang_sym: str, task_sym: str, predict_time: Optional[bool], text_prev=None) -> List[int]:
        """The tokens every hypothesis starts from: ``[<sop> text_prev] <sos> <lang> <task> [<notimestamps>]``
        (ESPnet's S2T prompt)."""
        model = self.s2t_model
        predict_time = predict_time if predict_time is not None else self.predict_time
        for sym in (lang_sym, task_sym):
            if sym not in self.converter.token2id:
                raise ValueError(f"'{sym}' is not in the model's token list")
        primer = [model.sos, self.converter.token2id[lang_sym], self.converter.token2id[task_sym]]
        if not predict_time:
            primer.append(self.converter.token2id[self.preprocessor_conf["notime_symbol"]])
        if text_prev is not None:
            if isinstance(text_prev, str):
                text_prev = self.converter.tokens2ids(self.tokenizer.text2tokens(text_prev))
            else:
                text_prev = [int(t) for t in text_prev]
            if model.na not in text_prev:
                primer = [model.sop, *text_prev, *primer]
        return primer

    def _results(self, nbest_hyps) -> list:
        """ESPnet's ``_decode_single_sample`` output for an n-best list."""
        model = self.s2t_model
        return nbest_results(nbest_hyps[: self.nbest], model.sos, model.blank_id, self.converter, self.tokenizer)

    def _masks_for(self, masks: Optional[Mask], lang_sym: str, task_sym: str) -> Optional[Mask]:
        """The masks an utterance decodes with instead of the predicted ones: those given, else every
        module where the context asks for it (see :meth:`_opens_all`), else None."""
        if masks is not None:
            return masks
        return self.every_module if self._opens_all(lang_sym, task_sym) else None

    @torch.no_grad()
    def decode(
        self,
        speech,
        text_prev=None,
        lang_sym=None,
        task_sym=None,
        predict_time=None,
        masks: Optional[Mask] = None,
        **sparsity,
    ) -> Decoding:
        """Decode one utterance with ESPnet's beam search (any of its scorers: LM, n-gram, ``text_prev``),
        the decoder running the utterance's gate mask. ``masks``: (enc, dec) instead of the predicted ones
        (binary, (n_layers, 4) and (n_layers, 3), module order as in ``layout.py``); ``sparsity``,
        ``enc_sparsity``, ``dec_sparsity``: the budget to decode at (see :meth:`budget`)."""
        lang_sym = lang_sym if lang_sym is not None else self.lang_sym
        task_sym = task_sym if task_sym is not None else self.task_sym
        budget = self.budget(**sparsity)
        start = time.perf_counter()
        (lang_sym,), langs = self._identified([speech], [lang_sym], [task_sym], budget)
        primer = self._primer(lang_sym, task_sym, predict_time, text_prev)
        forced = self._masks_for(masks, lang_sym, task_sym)
        enc, _, gates = self._encode([self._prepare(speech)], [lang_sym], [task_sym], forced, budget)
        decoding = Decoding(nbests=[], masks=self._masks(gates, 1), langs=langs, budget=None if forced else budget)
        decode_start = time.perf_counter()
        dec_masks = None if gates is None else gates.dec
        if "ctc" in self.beam_search.part_scorers and outruns_ctc(self.maxlenratio, enc.size(1)):
            # ESPnet's search would outrun the CTC prefix scorer (IndexError); ours caps the length
            search = MultiUtteranceBeamSearch(self.beam_search)
            with self._autocast():
                nbest = search([enc[0]], [primer], dec_masks, self.maxlenratio, self.minlenratio)[0]
            decoding.timing["ctc_s"] = search.ctc_s
        else:
            nbest = self._espnet_search(enc[0], primer, dec_masks)
            decoding.timing["ctc_s"] = None  # ESPnet's search does not time its scorers
        decoding.nbests.append(self._results(nbest))
        end = time.perf_counter()
        decoding.timing.update(
            encoder_s=decode_start - start, decoder_s=end - decode_start, gates_s=gates.predictor_s if gates else 0.0
        )
        return decoding

    def _espnet_search(self, enc: torch.Tensor, primer, masks: Optional[torch.Tensor], lengths=None):
        """ESPnet's beam search (its configured scorers) of one encoder output (T, D), or on 202611 of a padded
        batch (U, T, D) with ``lengths`` (U,) and one primer per utterance; the decoder runs ``masks`` (U,
        n_layers, 3), None: all open or the static mask. Returns the n-best list, or one per utterance."""
        scorer = GatedDecoderScorer(self.s2t_model.decoder, enc, lengths, masks)
        search = bound_search(self.beam_search, scorer, primer)
        batch = {} if lengths is None else {"x_lengths": lengths}
        with self._autocast():
            nbests = search(x=enc, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio, **batch)
        return nbests

    def __call__(self, speech, text_prev=None, lang_sym=None, task_sym=None, predict_time=None):
        """ESPnet's ``Speech2Text.__call__``: the n-best list of one utterance (see :meth:`decode`)."""
        return self.decode(speech, text_prev, lang_sym, task_sym, predict_time).nbests[0]

    @torch.no_grad()
    def decode_batch(
        self,
        speeches: Sequence[Union[torch.Tensor, np.ndarray]],
        lang_sym: Union[str, Sequence[str], None] = None,
        task_sym: Union[str, Sequence[str], None] = None,
        predict_time: Optional[bool] = None,
        batch_size: Optional[int] = None,
        masks: Optional[Mask] = None,
        search: str = "ours",
        **sparsity,
    ) -> Decoding:
        """Decode several utterances together; each gets what :meth:`decode` gives it alone.

        The utterances are sorted by length, longest first, and decoded in batches of
        ``batch_size`` (None: all at once). A batch is padded and encoded together, each
        utterance with the features, encoder output and gates it gets alone (the model's
        ``_extract_feats``, the encoder's masks and padding handling); the beam searches of
        its utterances run together, each utterance with its own gate mask.
        ``lang_sym``/``task_sym``: one symbol for all, or one per utterance; ``masks``: see :meth:`decode`;
        ``search``: one of :data:`SEARCHES`; ours falls back to ESPnet's for scorers it does not batch;
        ``sparsity``, ``enc_sparsity``, ``dec_sparsity``: the budget to decode at (see :meth:`budget`).
        """
        n = len(speeches)
        budget = self.budget(**sparsity)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"decode_batch: batch_size must be >= 1, got {batch_size}")
        if search not in SEARCHES:
            raise ValueError(f"decode_batch: search must be one of {SEARCHES}, got '{search}'")
        if search == "ours" and (reason := MultiUtteranceBeamSearch.unsupported(self.beam_search)):
            logging.info(f"decode_batch: ESPnet's search instead of ours: {reason}")
            search = "espnet"
        langs, tasks = self._symbols(lang_sym, task_sym, n)
        langs, identified = self._identified(speeches, langs, tasks, budget)
        primers = [self._primer(lang, task, predict_time) for lang, task in zip(langs, tasks, strict=True)]
        prepared = [self._prepare(s) for s in speeches]
        forced = [self._masks_for(masks, lang, task) for lang, task in zip(langs, tasks, strict=True)]
        # longest first; utterances with forced masks after the others (encoded apart)
        order = sorted(range(n), key=lambda i: (forced[i] is not None, -prepared[i].numel()))
        size = batch_size or max(n, 1)
        shaped = None if all(forced) else budget  # forced masks: no budget shaped them
        decoding = Decoding(nbests=[None] * n, masks=[None] * n, langs=identified, budget=shaped)
        for first in range(0, n, size):
            idx = order[first : first + size]
            self._decode_padded(decoding, idx, prepared, primers, langs, tasks, forced, search)
        return decoding

    def _decode_padded(self, decoding: Decoding, idx, prepared, primers, langs, tasks, forced, search: str) -> None:
        """Encode the utterances ``idx`` (longest first, those with ``forced`` masks last) in padded
        batches and beam-search them together, into ``decoding``. An encoder batch has one kind of
        masks: predicted, or the same forced ones.

        On a CPU a batch encodes no faster than its utterances one by one (the matrix
        products are as efficient either way) and padded frames cost in full, so there the
        encoder batches only utterances within ``CPU_ENCODER_MAX_PADDING`` of the batch's
        longest; on a GPU the whole batch is encoded at once."""
        start = time.perf_counter()
        encs, dec_masks = [], []
        for first, last in self._encoder_batches([prepared[i].numel() for i in idx], [forced[i] for i in idx]):
            group = idx[first:last]
            enc, enc_lens, gates = self._encode(
                [prepared[i] for i in group],
                [langs[i] for i in group],
                [tasks[i] for i in group],
                forced[group[0]],
                decoding.budget,
            )
            encs += [enc[j, :n] for j, n in enumerate(enc_lens.tolist())]
            for i, mask in zip(group, self._masks(gates, len(group)), strict=True):
                decoding.masks[i] = mask
            if gates is not None:
                dec_masks.append(gates.dec)
                decoding.timing["gates_s"] += gates.predictor_s
        decode_start = time.perf_counter()
        masks = torch.cat(dec_masks) if dec_masks else None
        batch_primers = [primers[i] for i in idx]
        if search == "espnet":
            nbests = self._espnet_searches(encs, batch_primers, masks)
            decoding.timing["ctc_s"] = None  # ESPnet's search does not time its scorers
        else:
            ours = MultiUtteranceBeamSearch(self.beam_search)
            with self._autocast():
                nbests = ours(encs, batch_primers, masks, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
            decoding.timing["ctc_s"] += ours.ctc_s
            decoding.search_log += [(length, [idx[u] for u in utts], per) for length, utts, per in ours.step_log]
        for i, nbest in zip(idx, nbests, strict=True):
            decoding.nbests[i] = self._results(nbest)
        end = time.perf_counter()
        decoding.timing["encoder_s"] += decode_start - start
        decoding.timing["decoder_s"] += end - decode_start

    def _espnet_searches(self, encs: List[torch.Tensor], primers, masks: Optional[torch.Tensor]) -> List[list]:
        """The n-best lists of ESPnet's search: one utterance-batched search on 202611 (equal primer lengths),
        one search per utterance on 202511."""
        if not SEARCH_BATCHES_UTTERANCES or len({len(p) for p in primers}) > 1:
            utterance_masks = [None if masks is None else masks[j : j + 1] for j in range(len(encs))]
            return [self._espnet_search(*args) for args in zip(encs, primers, utterance_masks, strict=True)]
        lengths = torch.tensor([e.size(0) for e in encs], device=encs[0].device)
        return self._espnet_search(pad_list(encs, 0.0), primers, masks, lengths)

    def _encoder_batches(self, lengths: Sequence[int], forced: Sequence[Optional[Mask]]) -> List[Tuple[int, int]]:
        """[first, last) ranges of ``lengths`` (longest first within each kind of masks) encoded
        together: one kind of masks per range, on a CPU also little padding."""
        on_cpu = torch.device(self.device).type == "cpu"
        ranges, first = [], 0
        for i, n in enumerate(lengths):
            if forced[i] is not forced[first] or (on_cpu and lengths[first] > (1 + CPU_ENCODER_MAX_PADDING) * n):
                ranges.append((first, i))
                first = i
        return ranges + [(first, len(lengths))]
