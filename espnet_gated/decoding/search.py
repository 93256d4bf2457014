"""Beam search over several utterances at once (ESPnet 202511 decodes one at a time).

:class:`MultiUtteranceBeamSearch` runs the search of ESPnet's ``BatchBeamSearch`` (same
scorers, weights, pre-beam, length limits, end detection, ``<eos>`` handling) for ``B``
utterances together: at every step the running hypotheses of all utterances are stacked
into one decoder call, each utterance's hypotheses forming a contiguous block of rows.
Each utterance keeps its own gate mask: the decoder runs a module only on the blocks of
the utterances that keep it (``rows.build_plan``), and cross-attention attends each block
to its own utterance's cached keys/values. CTC prefix scoring scores the hypotheses of all
utterances at once (:class:`espnet_gated.decoding.ctc_prefix_score.BatchCTCPrefixScore`, ESPnet's
arithmetic), on the tokens after the prompt (as :class:`espnet_gated.adapter.PromptCTCScorer`
does). End detection follows the installed ESPnet's rule (``compat.end_detect_position``).

A block has as many rows as the utterance with the most running hypotheses; shorter
blocks are padded with copies that are never selected. Utterances that finish leave the
batch. The hypotheses are the ones ESPnet's search finds for each utterance alone (up to
floating-point rounding in batched matrix products).

On a GPU a step synchronises with the host once, to read the chosen tokens and scores
(which hypotheses end is decided on the host, as in ESPnet): the top-k of all utterances is
one operation, end detection reads host copies of the scores, and the CTC prefix scorer
has no per-hypothesis loops (ESPnet's reads a device value for every hypothesis at every
step). CTC log-probabilities are computed in float32 even under autocast (half-precision
decoding).
"""

import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_gated.compat import (
    BatchBeamSearch,
    CTCPrefixScorer,
    Hypothesis,
    LengthBonus,
    end_detect,
    end_detect_position,
    subsequent_mask,
)
from espnet_gated.decoding.ctc_prefix_score import BatchCTCPrefixScore
from espnet_gated.method.decoder import GatedTransformerDecoder, MemoryKeysValues
from espnet_gated.method.layout import DECODER_MODULES
from espnet_gated.method.pruning import refuse_gates
from espnet_gated.method.rows import build_plan

logger = logging.getLogger(__name__)


def _length_limits(maxlenratio: float, minlenratio: float, n_frames: int, cap: Optional[int] = None) -> Tuple[int, int]:
    """ESPnet's ``BeamSearch.forward`` rules for the search length of one utterance; ``cap``
    bounds the maximum (the encoder frames, with CTC: ``outruns_ctc``)."""
    if maxlenratio == 0:
        maxlen = n_frames
    elif maxlenratio < 0:
        maxlen = -1 * int(maxlenratio)
    else:
        maxlen = max(1, int(maxlenratio * n_frames))
    if cap is not None:
        maxlen = min(maxlen, cap)
    minlen = -1 * int(minlenratio) if minlenratio < 0 else int(minlenratio * n_frames)
    return maxlen, minlen


def outruns_ctc(maxlenratio: float, n_frames: int) -> bool:
    """Whether ESPnet's search with ``maxlenratio`` would emit more tokens than there are encoder
    frames, past which ESPnet's ``CTCPrefixScoreTH`` fails with an IndexError (a ratio above 1 or
    a fixed length, ``maxlenratio < 0``; ``maxlenratio: 0`` stops at the frames). The search here
    caps the length at the frames when it scores with CTC."""
    return _length_limits(maxlenratio, 0.0, n_frames)[0] > n_frames


class MultiUtteranceBeamSearch:
    """Decode several utterances together with the scorers of an ESPnet beam search.

    Args:
        beam_search: the configured ESPnet ``BatchBeamSearch`` (e.g. ``Speech2Text.beam_search``).
            Its scorers must be a ``GatedTransformerDecoder`` as ``decoder``, optionally
            ``CTCPrefixScorer`` (``ctc``), ``LengthBonus`` and ESPnet's S2T ``ScoreFilter``
            (``scorefilter``); others (language models) raise NotImplementedError.
    """

    @staticmethod
    def unsupported(beam_search: BatchBeamSearch) -> Optional[str]:
        """Why this search cannot run the scorers of ``beam_search``, or None if it can."""
        from espnet2.bin.s2t_inference import ScoreFilter

        allowed_full = {"decoder": GatedTransformerDecoder, "length_bonus": LengthBonus, "scorefilter": ScoreFilter}
        for name, scorer in beam_search.full_scorers.items():
            if name not in allowed_full or not isinstance(scorer, allowed_full[name]):
                return f"it supports the scorers {sorted(allowed_full)} and ctc, not '{name}' ({type(scorer).__name__})"
        for name, scorer in beam_search.part_scorers.items():
            if name != "ctc" or not isinstance(scorer, CTCPrefixScorer):
                return f"it supports CTC only as partial scorer, not '{name}' ({type(scorer).__name__})"
        if "decoder" not in beam_search.full_scorers:
            return "it needs the attention decoder (ctc_weight < 1)"
        if beam_search.return_hs:
            return "it does not return hidden states"
        return None

    def __init__(self, beam_search: BatchBeamSearch):
        reason = self.unsupported(beam_search)
        if reason is not None:
            raise NotImplementedError(f"the multi-utterance search cannot decode this configuration: {reason}")
        self.bs = beam_search
        self.decoder: GatedTransformerDecoder = beam_search.full_scorers["decoder"]
        self.ctc: Optional[CTCPrefixScorer] = beam_search.part_scorers.get("ctc")
        #: per step: (prefix length, active utterance indices, rows per utterance)
        self.step_log: List[Tuple[int, List[int], int]] = []
        #: seconds spent in CTC prefix scoring by the last call (host time: on a GPU, launches)
        self.ctc_s = 0.0

    # ------------------------------------------------------------------ helpers
    def _plan(self, masks: torch.Tensor, active: Sequence[int], per: int, cache: Dict, device: torch.device):
        key = (tuple(active), per)
        if key not in cache:
            cache[key] = build_plan(masks[list(active)].repeat_interleave(per, dim=0), device)
        return cache[key]

    def _ctc_scorer(self, memory: torch.Tensor, lengths: Sequence[int]) -> BatchCTCPrefixScore:
        """The CTC prefix scorer of the padded encoder outputs: log-probabilities of the valid
        frames only (the projection to the vocabulary is a large share of CTC's cost), in
        float32 also under autocast; the scorer fills the padding."""
        device = memory.device
        valid = torch.arange(memory.size(1), device=device) < torch.tensor(lengths, device=device)[:, None]
        with torch.autocast(memory.device.type, enabled=False):
            frames = self.ctc.ctc.log_softmax(memory[valid].float().unsqueeze(0))[0]
        logp = frames.new_empty(*valid.shape, frames.size(-1))
        logp[valid] = frames
        return BatchCTCPrefixScore(logp, lengths, 0, self.ctc.eos)

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def __call__(
        self,
        encs: Sequence[torch.Tensor],
        primers: Sequence[Sequence[int]],
        masks: Optional[torch.Tensor] = None,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
    ) -> List[List[Hypothesis]]:
        """N-best hypotheses (sorted, best first) of each utterance.

        encs: encoder outputs (T_b, D); primers: each utterance's hypothesis primer
        (``<sos><lang><task><notimestamps>``, all of the same length); masks: (B,
        n_dec_layers, 3) binary decoder gate masks, one per utterance (None: the
        decoder's static mask, or all modules open).
        """
        if len(encs) != len(primers):
            raise ValueError(f"{len(encs)} encoder outputs but {len(primers)} primers")
        if len({len(p) for p in primers}) > 1:
            raise ValueError("batched decoding needs primers of equal length (no text_prev)")
        n_layers = len(self.decoder.decoders)
        refuse_gates("decoder", self.decoder.static_mask, masks)
        if masks is None:
            masks = torch.ones(len(encs), n_layers, len(DECODER_MODULES))
            if self.decoder.static_mask is not None:
                masks = self.decoder.static_mask.expand(len(encs), -1, -1)
        masks = (masks > 0.5).float().cpu()
        if masks.shape != (len(encs), n_layers, len(DECODER_MODULES)):
            raise ValueError(f"decoder masks have shape {tuple(masks.shape)}, want {(len(encs), n_layers, 3)}")
        self.step_log = []
        self.ctc_s = 0.0
        return self._search(list(range(len(encs))), encs, primers, masks, maxlenratio, minlenratio)

    def _search(self, utts, all_encs, all_primers, all_masks, maxlenratio, minlenratio) -> List[List[Hypothesis]]:
        """Search the utterances ``utts`` (indices into the ``all_*`` arguments)."""
        bs, decoder = self.bs, self.decoder
        encs = [all_encs[u] for u in utts]
        primers = [all_primers[u] for u in utts]
        masks = all_masks[utts]
        n_utt = len(utts)
        device, dtype = encs[0].device, encs[0].dtype
        lengths = [e.size(0) for e in encs]
        caps = [n if self.ctc is not None else None for n in lengths]  # CTC: one token per frame at most
        limits = [_length_limits(maxlenratio, minlenratio, n, cap) for n, cap in zip(lengths, caps, strict=True)]
        memory = encs[0].new_zeros(n_utt, max(lengths), encs[0].size(1))
        for j, e in enumerate(encs):
            memory[j, : e.size(0)] = e
        memory_mask = None
        if len(set(lengths)) > 1:
            memory_mask = (
                torch.arange(max(lengths), device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
            )
            memory_mask = memory_mask.unsqueeze(1)
        memory_kv = MemoryKeysValues(memory, memory_mask)
        ctc_scorer = ctc_state = ctc_utts = None
        # running hypotheses: rows in blocks of `per` per active utterance, `live[j]` real ones first
        active = list(range(n_utt))
        per, live = 1, [1] * n_utt
        yseq = torch.tensor([list(p) for p in primers], device=device, dtype=torch.long)
        score = torch.zeros(n_utt, device=device)
        run_scores = {k: torch.zeros(n_utt, device=device) for k in bs.scorers}
        cache = self_kv = None
        ended: List[List[Hypothesis]] = [[] for _ in range(n_utt)]
        ended_host: List[List[Dict]] = [[] for _ in range(n_utt)]  # their lengths and scores for end detection
        finished = [False] * n_utt
        plans: Dict = {}
        if self.ctc is not None:
            ctc_start = time.perf_counter()
            ctc_scorer = self._ctc_scorer(memory, lengths)
            ctc_utts = torch.arange(n_utt, device=device)
            self.ctc_s += time.perf_counter() - ctc_start
        tgt_mask_cache: Dict[int, torch.Tensor] = {}
        primer_len = len(primers[0])
        i = 0
        while active:
            n_rows, length = yseq.size(0), yseq.size(1)
            self.step_log.append((length, [utts[u] for u in active], per))
            if length not in tgt_mask_cache:
                tgt_mask_cache[length] = subsequent_mask(length, device=device).unsqueeze(0)
            plan = self._plan(masks, active, per, plans, device)
            # ---- scoring (the order of ESPnet's BatchBeamSearch.search)
            memory_rows = None
            if not decoder.cache_src_kv:  # per-row memory, as ESPnet's decoder gets it
                memory_rows = memory_kv.memory.repeat_interleave(per, dim=0)
                mask_rows = None if memory_kv.mask is None else memory_kv.mask.repeat_interleave(per, dim=0)
            logp, new_cache, new_kv = decoder.step(
                yseq,
                tgt_mask_cache[length],
                cache,
                self_kv,
                plan,
                memory=memory_rows,
                memory_mask=None if memory_rows is None else mask_rows,
                memory_kv=memory_kv,
            )
            scores = {}
            weighted = torch.zeros(n_rows, bs.n_vocab, dtype=dtype, device=device)
            for k, scorer in bs.full_scorers.items():
                if k == "decoder":
                    scores[k] = logp
                else:
                    scores[k], _ = scorer.batch_score(yseq, [None] * n_rows, weighted.new_zeros(n_rows, 1))
                weighted += bs.weights[k] * scores[k]
            part_ids = None
            if bs.do_pre_beam:
                pre = weighted if bs.pre_beam_score_key == "full" else scores[bs.pre_beam_score_key]
                part_ids = torch.topk(pre, bs.pre_beam_size, dim=-1)[1]
            if self.ctc is not None:
                ctc_start = time.perf_counter()
                # the primer's last token stands for <sos>: CTC scores only what follows the prompt
                scores["ctc"], ctc_scored = ctc_scorer(
                    yseq[:, primer_len - 1 :], ctc_state, part_ids, ctc_utts, max(lengths[u] for u in active)
                )
                self.ctc_s += time.perf_counter() - ctc_start
                weighted += bs.weights["ctc"] * scores["ctc"]
            weighted += score.to(dtype=dtype, device=device).unsqueeze(1)
            # ---- top-k per utterance among its live rows, all utterances in one operation
            n_active = len(active)
            blocks = weighted.view(n_active, per, bs.n_vocab)
            if min(live) < per:  # padding rows of a block are never chosen
                padding = torch.tensor([[r >= n for r in range(per)] for n in live]).to(device)
                blocks = blocks.masked_fill(padding.unsqueeze(-1), float("-inf"))
            top = blocks.reshape(n_active, per * bs.n_vocab).topk(bs.beam_size)[1]
            prev = (
                torch.div(top, bs.n_vocab, rounding_mode="trunc") + per * torch.arange(n_active, device=device)[:, None]
            ).flatten()
            tok = (top % bs.n_vocab).flatten()
            cand_yseq = torch.cat([yseq[prev], tok[:, None]], dim=1)
            cand_score = weighted[prev, tok]
            cand_scores = {k: run_scores[k][prev] + v[prev, tok] for k, v in scores.items()}
            # ---- post-processing per utterance (ESPnet's BatchBeamSearch.post_process), on host copies
            host = torch.stack([tok.to(torch.float64), cand_score.to(torch.float64)]).cpu()  # the step's one sync
            is_eos = (host[0] == bs.eos).tolist()
            host_score = host[1].tolist()
            keep_idx, new_live, still_active = [], [], []
            for j, u in enumerate(active):
                maxlen, minlen = limits[u]
                cands = range(j * bs.beam_size, (j + 1) * bs.beam_size)
                last = i == maxlen - 1
                remaining = []
                for c in cands:
                    if is_eos[c] or last:
                        if i >= minlen:
                            y = cand_yseq[c]
                            if last:
                                y = torch.cat([y, y.new_tensor([bs.eos])])
                            ended[u].append(
                                Hypothesis(
                                    yseq=y,
                                    score=cand_score[c],
                                    scores={k: v[c] for k, v in cand_scores.items()},
                                    states={},
                                    hs=[],
                                )
                            )
                            ended_host[u].append({"yseq": y, "score": host_score[c]})
                    else:
                        remaining.append(c)
                done = not remaining
                if not done and maxlenratio == 0.0 and end_detect(ended_host[u], end_detect_position(i, primer_len)):
                    logger.debug(f"utterance {utts[u]}: end detected at {i}")
                    done = True
                if done:
                    finished[u] = True
                    continue
                still_active.append(u)
                new_live.append(len(remaining))
                keep_idx.append(remaining)
            if not still_active:
                break
            # ---- next running hypotheses: pad the blocks to equal size with copies
            new_per = max(new_live)
            idx = []
            for remaining in keep_idx:
                idx += remaining + [remaining[0]] * (new_per - len(remaining))
            idx_t = torch.tensor(idx, device=device)
            rows = prev[idx_t]
            yseq = cand_yseq[idx_t]
            score = cand_score[idx_t]
            run_scores = {k: v[idx_t] for k, v in cand_scores.items()}
            cache = [c.index_select(0, rows) for c in new_cache]
            self_kv = None
            if new_kv is not None:
                self_kv = [
                    None if kv is None else (kv[0].index_select(0, rows), kv[1].index_select(0, rows)) for kv in new_kv
                ]
            if self.ctc is not None:
                ctc_start = time.perf_counter()
                ctc_state = ctc_scorer.select_state(ctc_scored, rows, tok[idx_t])
                if still_active != active:
                    ctc_utts = torch.tensor(still_active, device=device)
                self.ctc_s += time.perf_counter() - ctc_start
            if still_active != active:
                memory_kv = memory_kv.select([active.index(u) for u in still_active])
                active = still_active
            per, live = new_per, new_live
            i += 1
        results = []
        retry = []
        for u in range(n_utt):
            key = (lambda h: h.score / (len(h.yseq) - 1)) if bs.normalize_length else (lambda h: h.score)
            nbest = sorted(ended[u], key=key, reverse=True)
            if not nbest:
                logger.warning(
                    f"utterance {utts[u]}: there is no N-best results, "
                    "perform recognition again with smaller minlenratio."
                )
                if minlenratio >= 0.1:
                    retry.append(u)
            results.append(nbest)
        if retry:
            again = self._search(
                [utts[u] for u in retry], all_encs, all_primers, all_masks, maxlenratio, max(0.0, minlenratio - 0.1)
            )
            for u, nbest in zip(retry, again, strict=True):
                results[u] = nbest
        return results
