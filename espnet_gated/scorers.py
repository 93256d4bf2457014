"""CTC prefix scoring that leaves out the decoding prompt.

An S2T (OWSM) search starts from a primer, ``<sos><lang><task><notimestamps>`` (after
``<sop>`` and a previous text, if any). ESPnet 202511's ``CTCPrefixScorer`` takes every
token after the primer's first as CTC output, the prompt included. The CTC never emits the
prompt (it learns ``text.ctc``, the plain transcript), so the best CTC path spends the first
frames on it and the joint score favours hypotheses that drop the first words: on the
default recipe's test sets, ``ctc_weight: 0.3`` raised the WER from 38 to 50%, where CTC
alone, greedy, gives 21%. :class:`PromptCTCPrefixScorer` scores only what follows the
primer; it learns the primer's length from the first scoring call of each search, which
sees exactly the primer.
"""

import torch
from espnet.nets.scorers.ctc import CTCPrefixScorer


class PromptCTCPrefixScorer(CTCPrefixScorer):
    """ESPnet's CTC prefix scorer with the primer's last token in the place of ``<sos>``."""

    def __init__(self, ctc, eos: int):
        super().__init__(ctc, eos)
        self.primer_len = None

    def init_state(self, x):
        self.primer_len = None
        with torch.autocast(x.device.type, enabled=False):  # half-precision decoding: CTC in float32
            return super().init_state(x)

    def batch_init_state(self, x):
        self.primer_len = None
        with torch.autocast(x.device.type, enabled=False):
            return super().batch_init_state(x)

    def _after_primer(self, y):
        if self.primer_len is None:
            self.primer_len = y.size(-1)
        return y[..., self.primer_len - 1 :]

    def score_partial(self, y, ids, state, x):
        return super().score_partial(self._after_primer(y), ids, state, x)

    def batch_score_partial(self, y, ids, state, x):
        return super().batch_score_partial(self._after_primer(y), ids, state, x)


def use_prompt_ctc(beam_search) -> None:
    """Replace the ``ctc`` scorer of an ESPnet beam search (if it has one) by
    :class:`PromptCTCPrefixScorer` on the same CTC module, keeping its weight."""
    old = beam_search.scorers.get("ctc")
    if old is None or isinstance(old, PromptCTCPrefixScorer):
        return
    new = PromptCTCPrefixScorer(old.ctc, old.eos)
    for scorers in (beam_search.scorers, beam_search.part_scorers, beam_search.full_scorers):
        if "ctc" in scorers:
            scorers["ctc"] = new
