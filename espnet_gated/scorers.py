"""CTC prefix scoring that leaves out the decoding prompt, in float32.

An S2T (OWSM) search starts from a primer, ``<sos><lang><task><notimestamps>`` (after
``<sop>`` and a previous text, if any). The CTC never emits the prompt (it learns
``text.ctc``, the plain transcript). ESPnet 202511's ``CTCPrefixScorer`` takes every token
after the primer's first as CTC output, the prompt included, so the best CTC path spends the
first frames on it and the joint score favours hypotheses that drop the first words: on the
default recipe's test sets, ``ctc_weight: 0.3`` raised the WER from 38 to 50%, where CTC
alone, greedy, gives 21%. ESPnet 202611's search strips the primer itself (PR #6599).
:class:`PromptCTCScorer` wraps ESPnet's scorer for one search and strips the primer on both
releases, so that both decode alike.
"""

import torch

from espnet_gated.compat import BatchPartialScorerInterface


class PromptCTCScorer(BatchPartialScorerInterface):
    """ESPnet's CTC prefix scorer (``scorer``) for one search from a primer of ``primer_length``
    tokens: the primer's last token stands in the place of ``<sos>``, and CTC is computed in float32
    also under half-precision autocast. Anything else is the wrapped scorer's."""

    def __init__(self, scorer, primer_length: int):
        self.scorer = scorer
        self.primer_length = primer_length

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def init_state(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return self.scorer.init_state(x)

    def batch_init_state(self, x, xs_lengths=None):
        extra = {} if xs_lengths is None else {"xs_lengths": xs_lengths}  # 202611's padded batches
        with torch.autocast(x.device.type, enabled=False):
            return self.scorer.batch_init_state(x, **extra)

    def select_state(self, state, i, new_id=None):
        return self.scorer.select_state(state, i, new_id)

    def score_partial(self, y, ids, state, x):
        return self.scorer.score_partial(y[..., self.primer_length - 1 :], ids, state, x)

    def batch_score_partial(self, y, ids, state, x):
        return self.scorer.batch_score_partial(y[..., self.primer_length - 1 :], ids, state, x)


#: tokens of the S2T prompt without a previous text or timestamps: <sos> <lang> <task> <notimestamps>
PROMPT_LENGTH = 4


def use_prompt_ctc(beam_search, primer_length: int = PROMPT_LENGTH) -> None:
    """Make ESPnet's own beam search (a stock ``Speech2Text``'s: the dense references of the benchmark
    and the tests) score CTC as the gated decoding does, for primers of ``primer_length`` tokens."""
    ctc = beam_search.scorers.get("ctc")
    if ctc is None or isinstance(ctc, PromptCTCScorer):
        return
    wrapped = PromptCTCScorer(ctc, primer_length)
    for scorers in (beam_search.scorers, beam_search.part_scorers, beam_search.full_scorers):
        if "ctc" in scorers:
            scorers["ctc"] = wrapped
