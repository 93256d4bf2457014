"""Decoding with gates: ESPnet's ``Speech2Text`` and beam search, told the context.

:class:`GatedSpeech2Text` is ESPnet's ``Speech2Text`` (model built by ``S2TTask`` from
``config.yaml``, ESPnet's ``BatchBeamSearch``, same results format) with three changes:
the encoder gets the ``<lang><task>`` context, the decoder keeps the utterance's mask for
the whole beam search, and ``speech_length: null`` in the training config disables the
padding to a fixed length. The mask of the last decoded utterance is in ``last_mask``,
the split of its time between encoding (incl. feature extraction and the gate
predictor) and beam search in ``last_timing``.
"""

import time
from contextlib import contextmanager, nullcontext
from typing import Optional, Tuple

import torch
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.layout import DECODER_MODULES, ENCODER_MODULES
from espnet_gated.model import GatedESPnetS2TModel

#: gate_mode values: the gate predictor's masks, or every module kept (the dense model
#: computed by the gated code, e.g. the reference of a sparsity sweep)
GATE_MODES = ("predicted", "all_open")


class GatedSpeech2Text(Speech2Text):
    def __init__(self, *args, gate_mode: str = "predicted", **kwargs):
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got '{gate_mode}'")
        super().__init__(*args, **kwargs)
        self.gate_mode = gate_mode
        if not isinstance(self.s2t_model, GatedESPnetS2TModel):
            raise ValueError(
                f"{type(self.s2t_model).__name__} is not a gated model (model: gated_espnet); "
                "decode it with espnet2.bin.s2t_inference"
            )
        self.natural_length = self.preprocessor_conf.get("speech_length") is None
        self.last_mask: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self.last_timing = {"encoder_s": 0.0, "decoder_s": 0.0}

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

    def _gates(self):
        if self.gate_mode == "all_open":
            layout = self.s2t_model.gate_layout
            return self.s2t_model.forced_gates(
                torch.ones(layout.n_layers["enc"], len(ENCODER_MODULES)),
                torch.ones(layout.n_layers["dec"], len(DECODER_MODULES)),
            )
        return nullcontext()

    @torch.no_grad()
    def __call__(self, speech, text_prev=None, lang_sym=None, task_sym=None, predict_time=None):
        lang_sym = lang_sym if lang_sym is not None else self.lang_sym
        task_sym = task_sym if task_sym is not None else self.task_sym
        model = self.s2t_model
        self.last_timing = {"encoder_s": 0.0, "decoder_s": 0.0}
        start = time.perf_counter()
        with model.using_context(model.token_context(lang_sym, task_sym)), self._length_of(speech), self._gates():
            results = super().__call__(speech, text_prev, lang_sym, task_sym, predict_time)
        self.last_timing["encoder_s"] = time.perf_counter() - start - self.last_timing["decoder_s"]
        self.last_mask = model.gate_masks()[0]
        return results

    def _decode_single_sample(self, enc: torch.Tensor):
        start = time.perf_counter()
        with self.s2t_model.decoder.installed_gates(self.s2t_model.current_gates.dec[:1]):
            results = super()._decode_single_sample(enc)
        self.last_timing["decoder_s"] = time.perf_counter() - start
        return results
