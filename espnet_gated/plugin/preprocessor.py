"""S2T preprocessing without padding to a fixed length (``preprocessor: s2t`` with ``speech_length: null``).

ESPnet's ``S2TPreprocessor`` pads or trims every utterance to ``speech_length`` seconds
(30 for OWSM). That is the published OWSM setting, but for corpora of short utterances
it multiplies encoder and cross-attention cost. ``preprocessor_conf: {speech_length:
null}`` keeps each utterance at its own length (training and decoding alike): the task
builds :class:`NaturalLengthS2TPreprocessor` for it, registered in ESPnet's preprocessor
choices as :data:`NATURAL_LENGTH`.
"""

import copy

from espnet2.train.preprocessor import S2TPreprocessor

#: the name of :class:`NaturalLengthS2TPreprocessor` in ESPnet's preprocessor choices
NATURAL_LENGTH = "s2t_natural_length"


class NaturalLengthS2TPreprocessor(S2TPreprocessor):
    """``S2TPreprocessor`` that leaves the waveform length as it is (``speech_length`` is None)."""

    def __init__(self, *args, speech_length=None, **kwargs):
        super().__init__(*args, speech_length=0, **kwargs)  # ESPnet computes a sample count from it

    def _pad_or_trim_speech(self, data):
        return data, 0


def natural_length(args) -> bool:
    """True when the config asks for ``speech_length: null``."""
    conf = getattr(args, "preprocessor_conf", None) or {}
    return "speech_length" in conf and conf["speech_length"] is None


def with_natural_length(args):
    """A copy of ``args`` whose preprocessor is :class:`NaturalLengthS2TPreprocessor` (ESPnet's task then builds it)."""
    args = copy.copy(args)
    args.preprocessor = NATURAL_LENGTH
    return args
