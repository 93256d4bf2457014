"""CTC prefix scores of the hypotheses of several utterances, for the batched beam search.

The arithmetic of ESPnet's ``CTCPrefixScoreTH`` (Seki et al., "Vectorized Beam Search for
CTC-Attention-Based Speech Recognition", 2019: the frame recursion, the pre-beam scoring of a
few labels per hypothesis, ``<eos>`` at each utterance's last frame), laid out for a search in
which utterances finish at different steps:

* the posteriors are kept once, (B, T, V), and each step gathers the columns it scores for
  its hypotheses; ESPnet's class copies them into a (2, T, B, V) tensor when built (1.2 GB for
  16 utterances of 7 s with OWSM's 50k vocabulary) and has to be built again, from scratch,
  whenever an utterance leaves the batch;
* the active utterances are an argument of each step, so none of that is rebuilt;
* no per-hypothesis Python loops: ESPnet's three per step read a device value for every
  hypothesis (a host-device synchronisation each on a GPU, thousands of small operations per
  step on a CPU in a batch of 16).

An utterance's scores are those it gets alone: frames past its end hold ESPnet's padding
(``log 0`` for labels, ``log 1`` for blank), which adds exact zeros to the prefix sums.
"""

from typing import Optional, Sequence, Tuple

import torch

LOG_ZERO = -10000000000.0  # ESPnet's logzero


class BatchCTCPrefixScore:
    """Args:
    logp: (B, T, V) CTC log-posteriors of B utterances (padded; the padding may hold anything:
        frames past an utterance's end are set in place to ESPnet's padding).
    lengths: (B,) frames of each utterance.
    blank, eos: label ids.
    """

    def __init__(self, logp: torch.Tensor, lengths: Sequence[int], blank: int, eos: int):
        self.blank, self.eos = blank, eos
        self.lengths = list(lengths)
        for i, n in enumerate(self.lengths):
            if n < logp.size(1):
                logp[i, n:, :] = LOG_ZERO
                logp[i, n:, blank] = 0
        self.x = logp
        self.x_blank = logp[:, :, blank].t().contiguous()  # (T, B)
        self.end_frames = torch.as_tensor(self.lengths, device=logp.device) - 1

    def __call__(
        self,
        y: torch.Tensor,
        state: Optional[Tuple[torch.Tensor, torch.Tensor]],
        scoring_ids: Optional[torch.Tensor],
        utts: torch.Tensor,
        end: int,
    ):
        """Scores of every label after each prefix.

        y: (N, L) prefixes, in ``len(utts)`` blocks of N / len(utts) rows, block ``j`` for
        utterance ``utts[j]``; state: from :meth:`select_state` (None at the first step);
        scoring_ids: (N, S) the labels to score per row (pre-beam), or None (all);
        end: frames to run the recursion over (the longest active utterance's).
        Returns (N, V) scores (``log 0`` for labels not scored) and the state of every
        (row, scored label).
        """
        x = self.x
        device, dtype = x.device, x.dtype
        n_rows, output_length = y.size(0), y.size(1) - 1
        n_frames = x.size(1)
        rows = torch.arange(n_rows, device=device)
        row_utt = utts.repeat_interleave(n_rows // utts.numel())
        if state is None:
            r_prev = torch.full((n_frames, 2, n_rows), LOG_ZERO, dtype=dtype, device=device)
            r_prev[:, 1] = torch.cumsum(self.x_blank[:, row_utt], 0)
            s_prev = 0.0
        else:
            r_prev, s_prev = state
        if scoring_ids is not None:  # (N, S, T) -> (T, N, S)
            x_label = x[row_utt.unsqueeze(1), :, scoring_ids].permute(2, 0, 1)
        else:
            x_label = x[row_utt].transpose(0, 1)
        n_scored = x_label.size(2)
        x_ = torch.stack([x_label, self.x_blank[:, row_utt].unsqueeze(2).expand(-1, -1, n_scored)])
        r = torch.full((n_frames, 2, n_rows, n_scored), LOG_ZERO, dtype=dtype, device=device)
        if output_length == 0:
            r[0, 0] = x_[0, 0]
        r_sum = torch.logsumexp(r_prev, 1)
        log_phi = r_sum.unsqueeze(2).repeat(1, 1, n_scored)
        last = y[:, -1]
        if scoring_ids is not None:
            # where the last label is among the scored ones its column takes r_prev[:, 1]; the others write
            # to a spare column
            match = scoring_ids == last.unsqueeze(1)
            pos = torch.where(match.any(1), match.int().argmax(1), n_scored)
            log_phi = torch.cat([log_phi, log_phi[:, :, :1]], dim=2)
            log_phi[:, rows, pos] = r_prev[:, 1]
            log_phi = log_phi[:, :, :n_scored]
        else:
            log_phi[:, rows, last] = r_prev[:, 1]
        start = max(output_length, 1)
        for t in range(start, end):
            rp = r[t - 1]
            rr = torch.stack([rp[0], log_phi[t - 1], rp[0], rp[1]]).view(2, 2, n_rows, n_scored)
            r[t] = torch.logsumexp(rr, 1) + x_[:, t]
        log_phi_x = torch.cat((log_phi[0].unsqueeze(0), log_phi[:-1]), dim=0) + x_[0]
        log_psi_ = torch.logsumexp(torch.cat((log_phi_x[start:end], r[start - 1, 0].unsqueeze(0)), dim=0), dim=0)
        if scoring_ids is not None:
            log_psi = torch.full((n_rows, x.size(2)), LOG_ZERO, dtype=dtype, device=device)
            log_psi.scatter_(1, scoring_ids, log_psi_)
        else:
            log_psi = log_psi_
        log_psi[:, self.eos] = r_sum[self.end_frames[row_utt], rows]
        if self.eos != self.blank:
            log_psi[:, self.blank] = LOG_ZERO
        return log_psi - s_prev, (r, log_psi, scoring_ids)

    @staticmethod
    def select_state(scored, rows: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The state of the prefixes ``rows`` extended by ``labels`` (the search's choice), from
        the second value a call returned (ESPnet's ``CTCPrefixScorer.select_state``: a label
        that was not scored takes the last scored column's state)."""
        r, log_psi, scoring_ids = scored
        if scoring_ids is None:
            cols = labels
        else:
            match = scoring_ids[rows] == labels.unsqueeze(1)
            cols = torch.where(match.any(1), match.int().argmax(1), scoring_ids.size(1) - 1)
        return r[:, :, rows, cols], log_psi[rows, labels].unsqueeze(1)
