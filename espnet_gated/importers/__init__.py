"""Importers of real corpora into Kaldi-style ``DATA_DIR/<split>/`` directories.

Each ``prepare_<corpus>(root, out, langs=None, tasks=None, ...)`` reads a corpus in its
published layout (see each module's docstring), checks it (a bad or missing file is a
:class:`CorpusError` naming it, and nothing is written), and writes one directory per split
holding all selected languages and tasks (utt2lang/utt2task tell them apart). It returns
``{split: number of utterances}``. The command line is :mod:`espnet_gated.bin.prepare`.
"""

from espnet_gated.importers.common import CorpusError
from espnet_gated.importers.common_voice import prepare_common_voice
from espnet_gated.importers.covost2 import prepare_covost2
from espnet_gated.importers.europarl_st import prepare_europarl_st
from espnet_gated.importers.fleurs import prepare_fleurs
from espnet_gated.importers.must_c import prepare_must_c

PREPARERS = {
    "europarl_st": prepare_europarl_st,
    "fleurs": prepare_fleurs,
    "covost2": prepare_covost2,
    "must_c": prepare_must_c,
    "common_voice": prepare_common_voice,
}

__all__ = [
    "PREPARERS",
    "CorpusError",
    "prepare_common_voice",
    "prepare_covost2",
    "prepare_europarl_st",
    "prepare_fleurs",
    "prepare_must_c",
]
