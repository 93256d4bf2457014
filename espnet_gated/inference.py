"""Decoding with gates: ESPnet's ``Speech2Text`` and beam search, told the context.

:class:`GatedSpeech2Text` is ESPnet's ``Speech2Text`` (model built by ``S2TTask`` from
``config.yaml``, ESPnet's ``BatchBeamSearch``, same results format) with these changes:

* the encoder gets the ``<lang><task>`` context, and the decoder keeps the utterance's
  mask for the whole beam search;
* ``speech_length: null`` in the training config disables the padding to a fixed length;
* exported models (``espnet_gated.bin.export``: ESPnet's plain S2T model whose encoder
  and decoder carry a static mask, no gate predictor) decode with that mask;
* CTC prefix scoring (``ctc_weight > 0``) leaves out the ``<lang><task><notimestamps>``
  prompt (:mod:`espnet_gated.scorers`; ESPnet's scorer counts it as CTC output);
* the weights file must match the model the config builds (ESPnet loads with
  ``strict=False`` and would silently keep random weights): unexpected or missing keys
  raise, except a missing gate predictor (a dense checkpoint: all gates open, warned);
* :meth:`GatedSpeech2Text.decode_batch` decodes several utterances at once, sorted by
  length, padded, encoder and beam search batched (:mod:`espnet_gated.batch_beam_search`),
  each utterance with the encoder output, gates and hypotheses it gets alone; ESPnet 202511
  decodes one at a time;
* :meth:`GatedSpeech2Text.from_pretrained` loads a model directory, a packed model (.zip)
  or a Hugging Face hub repository and returns the gated decoder (ESPnet's returns a plain
  ``Speech2Text``);
* ``lang_sym="none"`` identifies the language first (:meth:`GatedSpeech2Text.identify_language`),
  then decodes with that language (and so with its gate mask); it is in ``last_lang``;
* ``dtype: bfloat16`` or ``float16`` decodes under ``torch.autocast`` (weights stay float32;
  matrix products in half precision); the frontend, the input layer, the gate predictor, the
  CTC and decoder log-probabilities and the beam scores stay float32, so the gates are those
  of float32 decoding. ``float32``/``float64`` cast the model as ESPnet does.

Language identification's gate rule: each of :func:`candidate_languages` is tried with its own
gates, the mask the gate predictor gives the utterance with that language and the task (as in
training, where the decoder predicts ``<lang>`` after ``<sos>`` from the encoder output under
the true language's mask); the decoder scores one step after ``<sos>`` (as ESPnet's
``Speech2Language`` does for OWSM) and the language whose own mask gives it the highest
probability wins. The candidates are encoded as one batch (one row per language: K candidates
cost K encoder passes of the utterance). ``gate_mode="all_open"`` tries every language with
every module open (one mask, like a dense OWSM); an exported model has one fixed mask.

The mask of the last decoded utterance is in ``last_mask`` (``last_masks`` for a batch, and
``last_langs`` the identified languages, None where given),
the split of its time between encoding (feature extraction, gate predictor, encoder) and
beam search in ``last_timing`` (``gates_s``: the gate predictor's share of encoding;
``ctc_s``: the CTC prefix scorer's share of the batched beam search).
"""

import logging
import time
from contextlib import contextmanager, nullcontext
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.nets_utils import pad_list
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.batch_beam_search import MultiUtteranceBeamSearch, outruns_ctc
from espnet_gated.decoder import GatedTransformerDecoder
from espnet_gated.encoder import GatedEBranchformerEncoder
from espnet_gated.layout import DECODER_MODULES, ENCODER_MODULES
from espnet_gated.model import GATING_STATE, GatedESPnetS2TModel
from espnet_gated.registry import register
from espnet_gated.scorers import use_prompt_ctc

register()  # ESPnet's Speech2Text builds the model through S2TTask's class choices

#: gate_mode values: the gate predictor's masks, or every module kept (the dense model
#: computed by the gated code, e.g. the reference of a sparsity sweep)
GATE_MODES = ("predicted", "all_open")
#: unseen_context values: for a language or task the gate predictor never trained on (its
#: embedding is random, and so would its gates be), refuse to decode, or keep every module
UNSEEN_CONTEXT = ("error", "all_open")

#: the lang_sym that asks for language identification (``--lang_sym none``, also ``<none>``)
IDENTIFY = "none"


def wants_identification(lang_sym: Optional[str]) -> bool:
    return isinstance(lang_sym, str) and lang_sym.strip("<>") == IDENTIFY


def candidate_languages(model) -> List[str]:
    """The language tokens that language identification chooses from: the model's language
    tokens (``<deu>``, ... in OWSM's block ``<abk>`` .. ``<zul>``) that the gate predictor
    trained on (all of them for a model that did not record its contexts)."""
    from espnet_gated.pretrained import token_kind

    langs = [t for t in model.token_list if token_kind(t) == "lang"]
    trained, _ = model.gate_predictor.trained_contexts()
    return [t for t in langs if t in trained] if trained else langs


#: decoding dtypes: the first two cast the model (ESPnet's ``dtype``), the others decode under autocast
DTYPES = ("float32", "float64", "bfloat16", "float16")
HALF_DTYPES = ("bfloat16", "float16")
#: on a CPU the encoder batches utterances at most this much shorter than the batch's longest
#: (padding 10%; see ``GatedSpeech2Text._decode_padded``)
CPU_ENCODER_MAX_PADDING = 0.1


def is_exported(model) -> bool:
    """True for a statically pruned model (encoder and decoder built with ``static_mask``)."""
    return (
        isinstance(getattr(model, "encoder", None), GatedEBranchformerEncoder)
        and isinstance(getattr(model, "decoder", None), GatedTransformerDecoder)
        and model.encoder.static_mask is not None
        and model.decoder.static_mask is not None
    )


def check_weights(model: torch.nn.Module, model_file, config_file=None) -> None:
    """Raise if ``model_file`` does not hold exactly the weights of ``model``.

    A gated model may lack the gate predictor (a dense checkpoint: the predictor's initial
    state keeps every module); that is logged as a warning.
    """
    try:
        state = torch.load(model_file, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # not a plain state dict (e.g. an old pickle): ESPnet's own loader decides
        logging.debug(f"not checking the keys of {model_file}: {e}")
        return
    if "module" in state and not isinstance(state["module"], torch.Tensor):
        state = state["module"]
    have, want = set(state), set(model.state_dict())
    unexpected, missing = sorted(have - want), sorted(want - have)
    config = f" built from {config_file}" if config_file else ""
    if unexpected:
        raise ValueError(
            f"{model_file}: {len(unexpected)} weights do not belong to the model{config} "
            f"(e.g. {unexpected[:3]}); an exported model must be decoded with its own config.yaml"
        )
    predictor = [k for k in missing if k.startswith(GATING_STATE)]
    if len(predictor) < len(missing):
        other = [k for k in missing if not k.startswith(GATING_STATE)]
        raise ValueError(f"{model_file}: {len(other)} weights of the model{config} are missing (e.g. {other[:3]})")
    if predictor:
        logging.warning(f"{model_file} has no gate predictor weights: every gate stays open")


class UtteranceWiseFrontend(torch.nn.Module):
    """``frontend`` applied to each utterance of a batch on its own, the features padded with
    zeros (as ESPnet pads them): ESPnet's batched STFT reads the padding into the last frames
    of a shorter utterance, which alone reflect its own signal. It runs in float32 also under
    autocast (ESPnet's model turns off only CUDA's autocast around its frontend)."""

    def __init__(self, frontend: torch.nn.Module):
        super().__init__()
        self.frontend = frontend

    def output_size(self) -> int:
        return self.frontend.output_size()

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(speech.device.type, enabled=False):
            if speech.size(0) == 1:
                return self.frontend(speech, lengths)
            alone = [self.frontend(speech[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths.tolist())]
        return pad_list([feats[0] for feats, _ in alone], 0.0), torch.cat([n for _, n in alone])


class GatedSpeech2Text(Speech2Text):
    def __init__(
        self, *args, gate_mode: str = "predicted", unseen_context: str = "error", dtype: str = "float32", **kwargs
    ):
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got '{gate_mode}'")
        if unseen_context not in UNSEEN_CONTEXT:
            raise ValueError(f"unseen_context must be one of {UNSEEN_CONTEXT}, got '{unseen_context}'")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got '{dtype}'")
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
                f"(an exported model must be decoded with its own config.yaml): {str(e)[:500]}"
            ) from e
        self.gate_mode = gate_mode
        use_prompt_ctc(self.beam_search)
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
            check_weights(model, model_file, config_file)
        self.natural_length = self.preprocessor_conf.get("speech_length") is None
        self.last_mask: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self.last_masks: List[Tuple[torch.Tensor, torch.Tensor]] = []
        self.last_timing = _zero_timing()
        #: per decoder call of the last ``decode_batch``: (prefix length, utterances, rows per utterance)
        self.last_search_log: List[Tuple[int, List[int], int]] = []
        self.last_lang: Optional[str] = None
        self.last_langs: List[Optional[str]] = []

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
        from espnet_gated.pretrained import PretrainedError, fetch, locate, resolved_config_file

        try:
            root = fetch(model_tag, cache_dir, option="from_pretrained(DIR)")
            pre = locate(root, kwargs.pop("s2t_train_config", None), kwargs.pop("s2t_model_file", None))
        except PretrainedError as e:
            raise ValueError(f"from_pretrained('{model_tag}'): {e}") from None
        with resolved_config_file(pre) as config_file:
            return cls(s2t_train_config=str(config_file), s2t_model_file=str(pre.model_file), **kwargs)

    # ------------------------------------------------------------------ language identification
    @torch.no_grad()
    def identify_language(
        self, speeches: Sequence[Union[torch.Tensor, np.ndarray]], task_sym: Optional[str] = None
    ) -> List[List[Tuple[str, float]]]:
        """Per utterance, :func:`candidate_languages` with their probabilities, best first
        (the gate rule is in the module docstring)."""
        model = self.s2t_model
        task_sym = task_sym if task_sym is not None else self.task_sym
        candidates = candidate_languages(model)
        if not candidates:
            raise ValueError("language identification: the model's token list has no language tokens")
        ids = torch.tensor([model.token_list.index(t) for t in candidates], device=self.device)
        rows = 1 if self.exported else len(candidates)  # an exported model has one mask for every language
        out = []
        for speech in speeches:
            x = self._prepare(speech).to(self.device).unsqueeze(0).expand(rows, -1)
            lengths = x.new_full([rows], dtype=torch.long, fill_value=x.size(1))
            context = self._context(candidates[:rows], [task_sym] * rows)
            with context, self._gates(self.gate_mode == "all_open"), self._autocast():
                enc, enc_lens = model.encode(x, lengths)
            if isinstance(enc, tuple):
                enc = enc[0]
            sos = torch.full((rows, 1), model.sos, dtype=torch.long, device=self.device)
            gates = None if self.exported else model.current_gates.dec
            with nullcontext() if gates is None else model.decoder.installed_gates(gates):
                logits, _ = model.decoder(enc, enc_lens, sos, torch.ones(rows, dtype=torch.long, device=self.device))
            probs = torch.softmax(logits[:, 0, ids].float(), -1)  # (rows, candidates)
            # each language scored under its own mask: the probability its row gives it
            own = probs[0] if self.exported else probs.diagonal()
            own = own / own.sum()
            order = torch.argsort(own, descending=True).tolist()
            out.append([(candidates[i], float(own[i])) for i in order])
        return out

    def _identified(self, speeches, langs: List[str], tasks: List[str]) -> Tuple[List[str], List[Optional[str]]]:
        """``langs`` with each ``none`` replaced by the identified language; (langs, identified or None)."""
        asked = [i for i, lang in enumerate(langs) if wants_identification(lang)]
        found: List[Optional[str]] = [None] * len(langs)
        for i in asked:
            found[i] = self.identify_language([speeches[i]], tasks[i])[0][0][0]
        return [found[i] or lang for i, lang in enumerate(langs)], found

    def _autocast(self):
        """Half-precision decoding (``dtype: bfloat16|float16``), else nothing."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _length_of(self, speech):
        """With ``speech_length: null``, pad/trim to the utterance's own length."""
        if not self.natural_length:
            yield
            return
        conf = self.preprocessor_conf
        n = speech.shape[0]
        self.preprocessor_conf = {**conf, "speech_length": (n + 0.5) / conf["fs"]}
        try:
            yield
        finally:
            self.preprocessor_conf = conf

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

    def _gates(self, open_all: bool = False):
        if open_all:
            layout = self.s2t_model.gate_layout
            return self.s2t_model.forced_gates(
                torch.ones(layout.n_layers["enc"], len(ENCODER_MODULES)),
                torch.ones(layout.n_layers["dec"], len(DECODER_MODULES)),
            )
        return nullcontext()

    def _context(self, lang_sym, task_sym, batch_size: int = 1):
        if self.exported:
            return nullcontext()
        model = self.s2t_model
        if isinstance(lang_sym, str) and isinstance(task_sym, str):
            return model.using_context(model.token_context(lang_sym, task_sym, batch_size))
        rows = [model.token_context(lang, task)[0] for lang, task in zip(lang_sym, task_sym, strict=True)]
        return model.using_context(torch.stack(rows))

    @contextmanager
    def _timed_predictor(self):
        """Accumulate the gate predictor's time into ``last_timing['gates_s']``."""
        model = self.s2t_model
        if self.exported:
            yield
            return
        original = model.predict_gates

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.last_timing["gates_s"] += time.perf_counter() - start

        model.predict_gates = timed
        try:
            yield
        finally:
            del model.predict_gates

    @contextmanager
    def _features_alone(self):
        """Inside the block the model's frontend computes each utterance of a batch alone, in
        float32 (:class:`UtteranceWiseFrontend`)."""
        model = self.s2t_model
        frontend = model.frontend
        if frontend is None:
            yield
            return
        model.frontend = UtteranceWiseFrontend(frontend)
        try:
            yield
        finally:
            model.frontend = frontend

    def _symbols(self, lang_sym, task_sym, n: int) -> Tuple[List[str], List[str]]:
        """One language and task symbol per utterance (from one for all, or a list, or the defaults)."""
        langs = [lang_sym or self.lang_sym] * n if lang_sym is None or isinstance(lang_sym, str) else list(lang_sym)
        tasks = [task_sym or self.task_sym] * n if task_sym is None or isinstance(task_sym, str) else list(task_sym)
        if len(langs) != n or len(tasks) != n:
            raise ValueError(f"{n} utterances but {len(langs)} lang_sym and {len(tasks)} task_sym")
        return langs, tasks

    def _masks(self, n: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        model = self.s2t_model
        if self.exported:
            mask = ((model.encoder.static_mask > 0.5).int(), (model.decoder.static_mask > 0.5).int())
            return [mask] * n
        return model.gate_masks()

    # ------------------------------------------------------------------ one utterance
    @torch.no_grad()
    def __call__(self, speech, text_prev=None, lang_sym=None, task_sym=None, predict_time=None):
        lang_sym = lang_sym if lang_sym is not None else self.lang_sym
        task_sym = task_sym if task_sym is not None else self.task_sym
        self.last_timing = _zero_timing()
        start = time.perf_counter()
        (lang_sym,), (self.last_lang,) = self._identified([speech], [lang_sym], [task_sym])  # time: encoding
        open_all = self._opens_all(lang_sym, task_sym)
        with self._context(lang_sym, task_sym), self._length_of(speech), self._gates(open_all), self._timed_predictor():
            with self._autocast(), self._features_alone():
                results = super().__call__(speech, text_prev, lang_sym, task_sym, predict_time)
        self.last_timing["encoder_s"] = time.perf_counter() - start - self.last_timing["decoder_s"]
        self.last_mask = self._masks(1)[0]
        return results

    def _decode_single_sample(self, enc: torch.Tensor):
        start = time.perf_counter()
        gates = None if self.exported else self.s2t_model.current_gates.dec[:1]
        primer = self.beam_search.hyp_primer
        if "ctc" in self.beam_search.part_scorers and outruns_ctc(self.maxlenratio, enc.size(0)):
            # ESPnet's search would outrun the CTC prefix scorer (IndexError); ours caps the length
            search = MultiUtteranceBeamSearch(self.beam_search)
            nbest = search([enc], [primer], gates, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)[0]
            results = self._results(nbest)
            self.last_timing["ctc_s"] = search.ctc_s
        else:
            with nullcontext() if gates is None else self.s2t_model.decoder.installed_gates(gates):
                results = super()._decode_single_sample(enc)
        self.last_timing["decoder_s"] = time.perf_counter() - start
        return results

    # ------------------------------------------------------------------ several utterances
    def _prepare(self, speech) -> torch.Tensor:
        """Speech2Text's input handling: 1-D, padded or trimmed to ``speech_length``."""
        if isinstance(speech, np.ndarray):
            speech = torch.tensor(speech)
        if speech.dim() > 1:
            if not (speech.dim() == 2 and speech.size(1) == 1):
                raise ValueError(f"speech of size {tuple(speech.size())} is not supported (mono audio only)")
            speech = speech.squeeze(1)
        if self.natural_length:
            n = speech.size(-1)
        else:
            n = int(self.preprocessor_conf["fs"] * self.preprocessor_conf["speech_length"])
        speech = speech[:n] if speech.size(-1) >= n else F.pad(speech, (0, n - speech.size(-1)))
        return speech.to(getattr(torch, self.dtype))

    def _results(self, nbest_hyps) -> list:
        """ESPnet's ``_decode_single_sample`` output for an n-best list."""
        results = []
        for hyp in nbest_hyps[: self.nbest]:
            token_int = hyp.yseq[:-1].tolist()
            token_int = token_int[token_int.index(self.s2t_model.sos) + 1 :]
            token_int = [t for t in token_int if t != self.s2t_model.blank_id]
            token = self.converter.ids2tokens(token_int)
            token_nospecial = [x for x in token if not (x[0] == "<" and x[-1] == ">")]
            text = text_nospecial = None
            if self.tokenizer is not None:
                text = self.tokenizer.tokens2text(token)
                text_nospecial = self.tokenizer.tokens2text(token_nospecial)
            results.append((text, token, token_int, text_nospecial, hyp))
        return results

    @torch.no_grad()
    def decode_batch(
        self,
        speeches: Sequence[Union[torch.Tensor, np.ndarray]],
        lang_sym: Union[str, Sequence[str], None] = None,
        task_sym: Union[str, Sequence[str], None] = None,
        predict_time: Optional[bool] = None,
        batch_size: Optional[int] = None,
    ) -> List[list]:
        """Decode several utterances together; returns, per utterance (in the order given),
        what ``__call__`` returns for it alone (the n-best list).

        The utterances are sorted by length, longest first, and decoded in batches of
        ``batch_size`` (None: all at once). A batch is padded and encoded together, each
        utterance with the features, encoder output and gates it gets alone (the model's
        ``_extract_feats``, the encoder's masks and padding handling); the beam searches of
        its utterances run together, each utterance with its own gate mask.
        ``lang_sym``/``task_sym``: one symbol for all, or one per utterance.
        """
        n = len(speeches)
        if n == 0:
            return []
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"decode_batch: batch_size must be >= 1, got {batch_size}")
        if self.partial_ar:
            raise NotImplementedError("batched decoding does not support partial_ar")
        predict_time = predict_time if predict_time is not None else self.predict_time
        langs, tasks = self._symbols(lang_sym, task_sym, n)
        langs, self.last_langs = self._identified(speeches, langs, tasks)
        model = self.s2t_model
        notime = self.converter.token2id[self.preprocessor_conf["notime_symbol"]]
        primers = []
        for lang, task in zip(langs, tasks, strict=True):
            for sym in (lang, task):
                if sym not in self.converter.token2id:
                    raise ValueError(f"'{sym}' is not in the model's token list")
            primer = [model.sos, self.converter.token2id[lang], self.converter.token2id[task]]
            primers.append(primer if predict_time else primer + [notime])
        self.last_timing = _zero_timing()
        prepared = [self._prepare(s) for s in speeches]
        open_all = [self._opens_all(lang, task) for lang, task in zip(langs, tasks, strict=True)]
        # longest first; utterances that keep every module after the others (encoded apart: one forced mask)
        order = sorted(range(n), key=lambda i: (open_all[i], -prepared[i].numel()))
        size = batch_size or n
        results: List[Optional[list]] = [None] * n
        masks: List = [None] * n
        self.last_search_log = []
        for first in range(0, n, size):
            idx = order[first : first + size]
            nbests, batch_masks, search_log = self._decode_padded(
                [prepared[i] for i in idx],
                [primers[i] for i in idx],
                [langs[i] for i in idx],
                [tasks[i] for i in idx],
                [open_all[i] for i in idx],
            )
            for j, i in enumerate(idx):
                results[i], masks[i] = self._results(nbests[j]), batch_masks[j]
            self.last_search_log += [(length, [idx[u] for u in utts], per) for length, utts, per in search_log]
        self.last_masks = masks
        self.last_mask = masks[-1]
        return results

    @torch.no_grad()
    def encode_batch(
        self,
        speeches: Sequence[Union[torch.Tensor, np.ndarray]],
        lang_sym: Union[str, Sequence[str], None] = None,
        task_sym: Union[str, Sequence[str], None] = None,
        open_all: bool = False,
    ) -> Tuple[List[torch.Tensor], List[Tuple[torch.Tensor, torch.Tensor]]]:
        """Encode utterances as one padded batch; returns per utterance its encoder output
        (T, D) and its (enc, dec) gate mask, each the one it gets alone: its features are
        computed alone (:class:`UtteranceWiseFrontend`), then padded, normalised and encoded
        together (the encoder masks its padding, see ``espnet_gated.encoder``).
        ``open_all``: every module kept instead of the predicted masks."""
        langs, tasks = self._symbols(lang_sym, task_sym, len(speeches))
        prepared = [self._prepare(s) for s in speeches]
        speech = pad_list(prepared, 0.0).to(self.device)
        lengths = torch.tensor([s.numel() for s in prepared], device=self.device)
        with self._context(langs, tasks), self._gates(open_all), self._timed_predictor(), self._autocast():
            with self._features_alone():
                enc, enc_lens = self.s2t_model.encode(speech, lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        encs = [enc[j, :n] for j, n in enumerate(enc_lens.tolist())]  # one sync: the encoder has run
        return encs, self._masks(len(speeches))

    def _decode_padded(self, speeches: List[torch.Tensor], primers, langs, tasks, open_all: List[bool]):
        """Encode ``speeches`` (longest first within each ``open_all`` value) in padded batches
        and beam-search them together; returns (n-best lists, masks, the search's step log);
        adds to ``last_timing``. An encoder batch has one ``open_all`` value.

        On a CPU a batch encodes no faster than its utterances one by one (the matrix
        products are as efficient either way) and padded frames cost in full, so there the
        encoder batches only utterances within ``CPU_ENCODER_MAX_PADDING`` of the batch's
        longest; on a GPU the whole batch is encoded at once."""
        start = time.perf_counter()
        encs, masks, dec_masks = [], [], []
        for first, last in self._encoder_batches([s.numel() for s in speeches], open_all):
            group_encs, group_masks = self.encode_batch(
                speeches[first:last], langs[first:last], tasks[first:last], open_all[first]
            )
            encs += group_encs
            masks += group_masks
            if not self.exported:
                dec_masks.append(self.s2t_model.current_gates.dec)
        dec_masks = None if self.exported else torch.cat(dec_masks)
        decode_start = time.perf_counter()
        search = MultiUtteranceBeamSearch(self.beam_search)
        with self._autocast():
            nbests = search(encs, primers, dec_masks, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
        end = time.perf_counter()
        self.last_timing["encoder_s"] += decode_start - start
        self.last_timing["decoder_s"] += end - decode_start
        self.last_timing["ctc_s"] += search.ctc_s
        return nbests, masks, search.step_log

    def _encoder_batches(self, lengths: Sequence[int], open_all: Sequence[bool]) -> List[Tuple[int, int]]:
        """[first, last) ranges of ``lengths`` (longest first within each ``open_all`` value)
        encoded together: one ``open_all`` value per range, on a CPU also little padding."""
        on_cpu = torch.device(self.device).type == "cpu"
        ranges, first = [], 0
        for i, n in enumerate(lengths):
            if open_all[i] != open_all[first] or (on_cpu and lengths[first] > (1 + CPU_ENCODER_MAX_PADDING) * n):
                ranges.append((first, i))
                first = i
        return ranges + [(first, len(lengths))]


def _zero_timing():
    return {"encoder_s": 0.0, "decoder_s": 0.0, "gates_s": 0.0, "ctc_s": 0.0}
