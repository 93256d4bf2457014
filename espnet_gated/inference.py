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
* :meth:`GatedSpeech2Text.decode_batch` decodes several utterances at once
  (:mod:`espnet_gated.batch_beam_search`); ESPnet 202511 decodes one at a time;
* :meth:`GatedSpeech2Text.from_pretrained` loads a model directory, a packed model (.zip)
  or a Hugging Face hub repository and returns the gated decoder (ESPnet's returns a plain
  ``Speech2Text``);
* ``lang_sym="none"`` identifies the language first (:meth:`GatedSpeech2Text.identify_language`),
  then decodes with that language (and so with its gate mask); it is in ``last_lang``.

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
beam search in ``last_timing`` (``gates_s``: the gate predictor's share of encoding).
"""

import logging
import time
from contextlib import contextmanager, nullcontext
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
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


class GatedSpeech2Text(Speech2Text):
    def __init__(self, *args, gate_mode: str = "predicted", unseen_context: str = "error", **kwargs):
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got '{gate_mode}'")
        if unseen_context not in UNSEEN_CONTEXT:
            raise ValueError(f"unseen_context must be one of {UNSEEN_CONTEXT}, got '{unseen_context}'")
        self.unseen_context = unseen_context
        model_file = kwargs.get("s2t_model_file", args[1] if len(args) > 1 else None)
        config_file = kwargs.get("s2t_train_config", args[0] if args else None)
        try:
            super().__init__(*args, **kwargs)
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
        self.last_timing = {"encoder_s": 0.0, "decoder_s": 0.0, "gates_s": 0.0}
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
            with self._context(candidates[:rows], [task_sym] * rows), self._gates(self.gate_mode == "all_open"):
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
        self.last_timing = {"encoder_s": 0.0, "decoder_s": 0.0, "gates_s": 0.0}
        start = time.perf_counter()
        (lang_sym,), (self.last_lang,) = self._identified([speech], [lang_sym], [task_sym])  # time: encoding
        open_all = self._opens_all(lang_sym, task_sym)
        with self._context(lang_sym, task_sym), self._length_of(speech), self._gates(open_all), self._timed_predictor():
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
    ) -> List[list]:
        """Decode several utterances together; returns, per utterance, what ``__call__``
        returns for it alone (the n-best list).

        Utterances of equal (padded) length are encoded in one batch (the encoder's
        convolutions would mix padding into shorter utterances, so unequal lengths are
        encoded in separate batches); the beam searches of all utterances run together,
        each utterance with its own gate mask. ``lang_sym``/``task_sym``: one symbol for
        all, or one per utterance.
        """
        n = len(speeches)
        if n == 0:
            return []
        if self.partial_ar:
            raise NotImplementedError("batched decoding does not support partial_ar")
        predict_time = predict_time if predict_time is not None else self.predict_time
        langs = [lang_sym or self.lang_sym] * n if lang_sym is None or isinstance(lang_sym, str) else list(lang_sym)
        tasks = [task_sym or self.task_sym] * n if task_sym is None or isinstance(task_sym, str) else list(task_sym)
        if len(langs) != n or len(tasks) != n:
            raise ValueError(f"decode_batch: {n} utterances but {len(langs)} lang_sym and {len(tasks)} task_sym")
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
        self.last_timing = {"encoder_s": 0.0, "decoder_s": 0.0, "gates_s": 0.0}
        start = time.perf_counter()
        prepared = [self._prepare(s) for s in speeches]
        open_all = [self._opens_all(lang, task) for lang, task in zip(langs, tasks, strict=True)]
        groups = {}
        for i, s in enumerate(prepared):
            groups.setdefault((s.numel(), open_all[i]), []).append(i)
        encs: List[Optional[torch.Tensor]] = [None] * n
        dec_masks: List[Optional[torch.Tensor]] = [None] * n
        masks: List = [None] * n
        for (_, group_open), idx in groups.items():
            speech = torch.stack([prepared[i] for i in idx]).to(self.device)
            lengths = speech.new_full([len(idx)], dtype=torch.long, fill_value=speech.size(1))
            context = self._context([langs[i] for i in idx], [tasks[i] for i in idx])
            with context, self._gates(group_open), self._timed_predictor():
                enc, enc_lens = model.encode(speech, lengths)
            if isinstance(enc, tuple):
                enc = enc[0]
            for j, i in enumerate(idx):
                encs[i] = enc[j, : int(enc_lens[j])]
                if not self.exported:
                    dec_masks[i] = model.current_gates.dec[j]
            for j, mask in enumerate(self._masks(len(idx))):
                masks[idx[j]] = mask
        decode_start = time.perf_counter()
        search = MultiUtteranceBeamSearch(self.beam_search)
        nbests = search(
            encs,
            primers,
            None if self.exported else torch.stack(dec_masks),
            maxlenratio=self.maxlenratio,
            minlenratio=self.minlenratio,
        )
        end = time.perf_counter()
        self.last_timing["encoder_s"] = decode_start - start
        self.last_timing["decoder_s"] = end - decode_start
        self.last_search_log = search.step_log
        self.last_masks = masks
        self.last_mask = masks[-1]
        return [self._results(nbest) for nbest in nbests]
