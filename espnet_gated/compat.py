"""What differs between the ESPnet releases we run on (202511, Python 3.10-3.11; 202611, Python 3.12-3.13).

Every difference is detected from the installed ESPnet itself (a module that exists, a parameter in a
signature), never from a version string, and it is detected here only: the rest of the package imports
ESPnet's legacy (``espnet.*``) code and asks the questions below through this module.

* **Imports.** 202611 moved ``espnet.nets``/``espnet.utils`` to ``espnet2.legacy.*`` with no alias.
* **Padding before time convolutions.** 202611 zeroes padded frames before the cgMLP's and the merge's
  depthwise convolutions, in training too (ESPnet PR #6660); 202511 lets the padding leak into the last
  frames of shorter utterances. The gated encoder's training path follows the installed release, so that
  every gate open computes exactly what the stock layer computes (``STOCK_ZEROES_PADDING``).
* **The decoding primer.** 202611's beam search counts the primer (``<sos><lang><task><notimestamps>``)
  in its end detection; 202511 does not (``SEARCH_KNOWS_PRIMER``, :func:`end_detect_position`). (202611
  also scores CTC only after the primer; ``adapter.PromptCTCScorer`` does that on both releases.)
* **Utterance-batched search.** 202611's ``BatchBeamSearch`` decodes a padded batch of utterances
  (``SEARCH_BATCHES_UTTERANCES``); on 202511 it decodes one at a time.
* **Preprocessor options.** 202611's ``S2TPreprocessor`` has ``data_aug_*`` options that 202511 rejects
  (:data:`NEWER_PREPROCESSOR_OPTIONS`).

The renamed input-layer weights (``encoder.embed.out.0.*`` in 202511, ``encoder.embed.out.*`` in 202611)
need nothing here: 202611's input layer upgrades old names when a state dict is loaded, and
:mod:`espnet_gated.plugin.weights` checks the keys of a loaded state dict through that load.
"""

import importlib
import importlib.util
import inspect

#: where ESPnet's legacy (``espnet.*``) code lives in the installed release
LEGACY_ROOT = "espnet2.legacy" if importlib.util.find_spec("espnet2.legacy") is not None else "espnet"


def _legacy(path: str):
    return importlib.import_module(f"{LEGACY_ROOT}.{path}")


_nets_utils = _legacy("nets.pytorch_backend.nets_utils")
_subsampling = _legacy("nets.pytorch_backend.transformer.subsampling")
_beam_search = _legacy("nets.beam_search")

make_pad_mask = _nets_utils.make_pad_mask
pad_list = _nets_utils.pad_list
subsequent_mask = _legacy("nets.pytorch_backend.transformer.mask").subsequent_mask
TooShortUttError = _subsampling.TooShortUttError
check_short_utt = _subsampling.check_short_utt
#: ESPnet's convolutional input layers (the ones ``check_short_utt`` knows)
SUBSAMPLING_LAYERS = tuple(
    getattr(_subsampling, name)
    for name in (
        "Conv1dSubsampling1",
        "Conv1dSubsampling2",
        "Conv1dSubsampling3",
        "Conv2dSubsampling",
        "Conv2dSubsampling1",
        "Conv2dSubsampling2",
        "Conv2dSubsampling6",
        "Conv2dSubsampling8",
    )
)
BeamSearch = _beam_search.BeamSearch
Hypothesis = _beam_search.Hypothesis
BatchBeamSearch = _legacy("nets.batch_beam_search").BatchBeamSearch
_scorer_interface = _legacy("nets.scorer_interface")
BatchScorerInterface = _scorer_interface.BatchScorerInterface
BatchPartialScorerInterface = _scorer_interface.BatchPartialScorerInterface
end_detect = _legacy("nets.e2e_asr_common").end_detect
CTCPrefixScorer = _legacy("nets.scorers.ctc").CTCPrefixScorer
CTCPrefixScoreTH = _legacy("nets.ctc_prefix_score").CTCPrefixScoreTH
LengthBonus = _legacy("nets.scorers.length_bonus").LengthBonus
get_commandline_args = _legacy("utils.cli_utils").get_commandline_args


def _takes(function, parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def _stock_zeroes_padding() -> bool:
    from espnet2.asr.layers.cgmlp import ConvolutionalSpatialGatingUnit

    return _takes(ConvolutionalSpatialGatingUnit.forward, "mask_pad")


#: the stock E-Branchformer layer zeroes padded frames before its time convolutions (cgMLP, merge)
STOCK_ZEROES_PADDING = _stock_zeroes_padding()
#: ESPnet's beam search scores CTC after the primer and counts the primer in its end detection
SEARCH_KNOWS_PRIMER = hasattr(BeamSearch, "_primer_length")
#: ESPnet's ``BatchBeamSearch`` searches several utterances at once (202611, PR #6599)
SEARCH_BATCHES_UTTERANCES = _takes(BatchBeamSearch.forward, "x_lengths")


def end_detect_position(step: int, primer_length: int) -> int:
    """The position ESPnet's search gives ``end_detect`` at search step ``step`` (0 = the first token after
    the primer): 202611 counts the primer's tokens after ``<sos>``, 202511 does not."""
    return step + primer_length - 1 if SEARCH_KNOWS_PRIMER else step


def _newer_preprocessor_options():
    from espnet2.train.preprocessor import S2TPreprocessor

    return tuple(p for p in ("data_aug_effects", "data_aug_num", "data_aug_prob") if _takes(S2TPreprocessor, p))


#: ``S2TPreprocessor`` options of the installed release that 202511 does not know: a saved config leaves
#: them out while they hold their defaults, so that a model trained here decodes under 202511 too
NEWER_PREPROCESSOR_OPTIONS = _newer_preprocessor_options()
