"""The release differences that ``espnet_gated.compat`` detects from the installed ESPnet's code are the
ones its version says it has (202511 or 202611; the releases in between were never tested)."""

import importlib.metadata

from espnet_gated import compat
from espnet_gated.plugin.tasks import preprocessor_defaults

NEWER = int(importlib.metadata.version("espnet").split(".")[0]) >= 202611
DATA_AUG = {"data_aug_effects", "data_aug_num", "data_aug_prob"}


def test_detected_differences_match_the_installed_release():
    assert compat.LEGACY_ROOT == ("espnet2.legacy" if NEWER else "espnet")
    assert compat.STOCK_ZEROES_PADDING is NEWER
    assert compat.SEARCH_KNOWS_PRIMER is NEWER
    assert compat.SEARCH_BATCHES_UTTERANCES is NEWER
    assert set(compat.NEWER_PREPROCESSOR_OPTIONS) == (DATA_AUG if NEWER else set())


def test_end_detection_counts_the_primer_where_espnet_does():
    # step 3 of a search from <sos><lang><task><notimestamps>: 202611 counts the three prompt tokens
    assert compat.end_detect_position(3, 4) == (6 if NEWER else 3)
    assert compat.end_detect_position(3, 1) == 3  # a primer of <sos> alone: the same on both


def test_saved_preprocessor_options_are_known_to_both_releases():
    defaults = preprocessor_defaults()
    assert not set(defaults) & DATA_AUG
    assert {"speech_length", "notime_symbol", "first_time_symbol", "last_time_symbol", "fs"} <= set(defaults)
