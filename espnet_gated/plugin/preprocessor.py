"""S2T preprocessing without padding to a fixed length.

ESPnet's ``S2TPreprocessor`` pads or trims every utterance to ``speech_length`` seconds
(30 for OWSM). That is the published OWSM setting, but for corpora of short utterances
it multiplies encoder and cross-attention cost. ``preprocessor_conf: {speech_length:
null}`` keeps each utterance at its own length (training and decoding alike).
"""

import copy

from espnet2.train.preprocessor import S2TPreprocessor


class NaturalLengthS2TPreprocessor(S2TPreprocessor):
    """``S2TPreprocessor`` that leaves the waveform length as it is."""

    def _pad_or_trim_speech(self, data):
        return data, 0


def natural_length(args) -> bool:
    """True when the config asks for ``speech_length: null``."""
    conf = getattr(args, "preprocessor_conf", None) or {}
    return "speech_length" in conf and conf["speech_length"] is None


def without_speech_length(args):
    """A copy of ``args`` that ESPnet's preprocessor factory accepts (length 0 is a
    placeholder; the padding step is replaced)."""
    args = copy.copy(args)
    args.preprocessor_conf = {**args.preprocessor_conf, "speech_length": 0}
    return args
