"""Decoding with gates: ESPnet's ``Speech2Text`` and beam search, told the context.

:class:`GatedSpeech2Text` is ESPnet's ``Speech2Text`` (model built by ``S2TTask`` from
``config.yaml``, ESPnet's ``BatchBeamSearch``, same results format) with three changes:
the encoder gets the ``<lang><task>`` context, the decoder keeps the utterance's mask for
the whole beam search, and ``speech_length: null`` in the training config disables the
padding to a fixed length. The mask of the last decoded utterance is in ``last_mask``.
"""

import logging
import time
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.model import GatedESPnetS2TModel


class GatedSpeech2Text(Speech2Text):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.s2t_model, GatedESPnetS2TModel):
            raise ValueError(
                f"{type(self.s2t_model).__name__} is not a gated model (model: gated_espnet); "
                "decode it with espnet2.bin.s2t_inference"
            )
        self.natural_length = self.preprocessor_conf.get("speech_length") is None
        self.last_mask: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

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

    @torch.no_grad()
    def __call__(self, speech, text_prev=None, lang_sym=None, task_sym=None, predict_time=None):
        lang_sym = lang_sym if lang_sym is not None else self.lang_sym
        task_sym = task_sym if task_sym is not None else self.task_sym
        model = self.s2t_model
        with model.using_context(model.token_context(lang_sym, task_sym)), self._length_of(speech):
            results = super().__call__(speech, text_prev, lang_sym, task_sym, predict_time)
        self.last_mask = model.gate_masks()[0]
        return results

    def _decode_single_sample(self, enc: torch.Tensor):
        with self.s2t_model.decoder.installed_gates(self.s2t_model.current_gates.dec[:1]):
            return super()._decode_single_sample(enc)


class Progress:
    """Log lines with count, rate and ETA, at most every ``every_s`` seconds."""

    def __init__(self, total: Optional[int], what: str = "utts", every_s: float = 10.0):
        self.total, self.what, self.every_s = total, what, every_s
        self.start = self.last = time.time()
        self.done = 0

    def update(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.time()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        if self.total:
            eta = (self.total - self.done) / max(rate, 1e-9)
            logging.info(f"{self.done}/{self.total} {self.what} ({rate:.2f} {self.what}/s, ETA {eta:.0f} s)")
        else:
            logging.info(f"{self.done} {self.what} ({rate:.2f} {self.what}/s)")
