"""What the benchmark observes while decoding: times, encoder frames, decoder calls.

Fixed decode length: random decoders emit ``<eos>`` at once or never, so by default
(``--decode_len N``) :func:`suppress_eos` sets the ``<eos>`` logit to -inf on every model's
``decoder.output_layer`` and the search runs with ``maxlenratio = -N``: every variant runs
exactly N decoder steps with a full beam, and ESPnet's search appends ``<eos>`` after the last.
"""

import time
from contextlib import contextmanager
from typing import Iterator, List, Sequence

import numpy as np
import torch
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.adapter import use_prompt_ctc
from espnet_gated.decoding.inference import GatedSpeech2Text


class TimedSpeech2Text(Speech2Text):
    """ESPnet's Speech2Text, with the beam search's time kept in ``decoder_s``, the time of its
    CTC prefix scorer added up in ``ctc_s``, and CTC scoring as the gated model's
    (``use_prompt_ctc``)."""

    decoder_s = 0.0
    ctc_s = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_prompt_ctc(self.beam_search)
        ctc = self.beam_search.part_scorers.get("ctc")
        if ctc is not None:  # what ESPnet's BatchBeamSearch calls of its CTC scorer
            for name in ("batch_init_state", "batch_score_partial", "select_state"):
                setattr(ctc, name, self._timed(getattr(ctc, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.ctc_s += time.perf_counter() - start

        return timed

    def _decode_single_sample(self, enc):
        start = time.perf_counter()
        try:
            return super()._decode_single_sample(enc)
        finally:
            self.decoder_s = time.perf_counter() - start

    def decode_samples(self, speech, n_samples: int):
        """ESPnet's ``__call__`` of ``speech`` padded or trimmed to ``n_samples`` (the gated decoder's
        :meth:`~GatedSpeech2Text.prepared_length`): ESPnet pads to ``speech_length`` seconds, which a
        config with ``speech_length: null`` lacks."""
        conf = self.preprocessor_conf
        self.preprocessor_conf = {**conf, "speech_length": (n_samples + 0.5) / conf["fs"]}
        try:
            return self(speech)
        finally:
            self.preprocessor_conf = conf


class Probe:
    """Records what a model executed: encoder calls (input frames, output frames, rows) and
    decoder calls (rows, prefix length)."""

    def __init__(self, model):
        self.frames: List[tuple] = []
        self.steps: List[tuple] = []

        def enc_hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            out = out[0] if isinstance(out, tuple) else out
            self.frames.append((int(args[0].size(1)), int(out.size(1)), int(args[0].size(0))))

        def embed_hook(module, args):
            self.steps.append((int(args[0].size(0)), int(args[0].size(1))))

        self.handles = [
            model.encoder.register_forward_hook(enc_hook),
            model.decoder.embed.register_forward_pre_hook(embed_hook),
        ]

    def reset(self) -> None:
        self.frames, self.steps = [], []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def suppress_eos(model) -> None:
    """Forward hook: the <eos> logit is -inf, so decoding runs to the maximum length."""
    eos = model.eos

    def hook(module, args, output):
        output[..., eos] = float("-inf")
        return output

    model.decoder.output_layer.register_forward_hook(hook)


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so that a timer around it measures it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def decoder_caches(s2t, on: bool) -> Iterator:
    """The gated decoder of ``s2t`` with its key/value caches on or off for the block (ESPnet's
    decoder, which has none, as it is)."""
    decoder = s2t.s2t_model.decoder
    if not hasattr(decoder, "cache_src_kv"):
        yield s2t
        return
    flags = decoder.cache_src_kv, decoder.cache_self_kv
    decoder.cache_src_kv = decoder.cache_self_kv = on
    try:
        yield s2t
    finally:
        decoder.cache_src_kv, decoder.cache_self_kv = flags


def encoder_frames(s2t: GatedSpeech2Text, speech: np.ndarray) -> int:
    """Encoder output frames of one utterance (one encoder pass, every module open)."""
    encs, _ = s2t.encode_batch([speech], masks=s2t.every_module)
    return int(encs[0].size(0))


def check_ctc_length(s2t: GatedSpeech2Text, speeches: Sequence[np.ndarray], decode_len: int) -> None:
    """ValueError if ``decode_len`` fixed tokens outrun ESPnet's CTC prefix scorer (it needs a prefix
    shorter than the encoder frames) on the shortest utterance."""
    frames = encoder_frames(s2t, min(speeches, key=len))
    if decode_len + 4 >= frames:
        raise ValueError(
            f"--decode_len {decode_len} is too long for CTC prefix scoring on the {frames} encoder frames of the "
            "shortest utterance (ESPnet's CTC scorer needs prefix length < frames): lower it or raise --utt_sec"
        )
