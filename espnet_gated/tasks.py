"""The S2T task used by espnet_gated's entry points.

It is ESPnet's ``S2TTask`` (same options, trainer and data pipeline); the gated classes
are found through the registration that importing any ``espnet_gated`` module does
(spawned DDP workers unpickle ``GatedS2TTask.main_worker`` and so import it). The only change: the preprocessor
accepts ``speech_length: null`` (no padding to a fixed length).
"""

import argparse
from typing import Callable, Dict, Optional

import numpy as np
from espnet2.tasks.s2t import S2TTask

from espnet_gated.preprocessor import NaturalLengthS2TPreprocessor, natural_length, without_speech_length


class GatedS2TTask(S2TTask):
    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not (args.use_preprocessor and natural_length(args)):
            return super().build_preprocess_fn(args, train)
        fn = super().build_preprocess_fn(without_speech_length(args), train)
        fn.__class__ = NaturalLengthS2TPreprocessor
        return fn
