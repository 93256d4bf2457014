"""The S2T task used by espnet_gated's entry points.

It is ESPnet's ``S2TTask`` (same options, trainer and data pipeline); the gated classes
are found through the registration that importing any ``espnet_gated`` module does
(spawned DDP workers unpickle ``GatedS2TTask.main_worker`` and so import it). Two changes: the preprocessor
accepts ``speech_length: null`` (no padding to a fixed length), and the saved
``config.yaml`` lists every preprocessor option (ESPnet's ``Speech2Text`` reads the
timestamp symbols and the sampling rate from it).
"""

import argparse
import inspect
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from espnet2.tasks.s2t import S2TTask
from espnet2.train.preprocessor import S2TPreprocessor

from espnet_gated.preprocessor import NaturalLengthS2TPreprocessor, natural_length, without_speech_length


def preprocessor_defaults() -> Dict[str, object]:
    """S2TPreprocessor's keyword defaults that a config may set (not the task-level ones)."""
    task_level = {
        "train",
        "token_type",
        "token_list",
        "bpemodel",
        "text_cleaner",
        "g2p_type",
        "non_linguistic_symbols",
        "rir_scp",
        "rir_apply_prob",
        "noise_scp",
        "noise_apply_prob",
        "noise_db_range",
        "short_noise_thres",
        "speech_volume_normalize",
    }
    params = inspect.signature(S2TPreprocessor.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty and p.name not in task_level}


class GatedS2TTask(S2TTask):
    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd: Optional[Sequence[str]] = None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        if getattr(args, "preprocessor", None) == "s2t":
            args.preprocessor_conf = {**preprocessor_defaults(), **(args.preprocessor_conf or {})}
        super().main(args=args)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not (args.use_preprocessor and natural_length(args)):
            return super().build_preprocess_fn(args, train)
        fn = super().build_preprocess_fn(without_speech_length(args), train)
        fn.__class__ = NaturalLengthS2TPreprocessor
        return fn
