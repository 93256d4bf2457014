"""What decoding returns: ESPnet's n-best lists, and per utterance what the gates did (:class:`Decoding`)."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

Mask = Tuple[torch.Tensor, torch.Tensor]
TIMES = ("encoder_s", "decoder_s", "gates_s", "ctc_s")


@dataclass
class Decoding:
    """What decoding some utterances gave, in the order they were given."""

    nbests: List[list]  # per utterance, ESPnet's n-best list of (text, token, token_int, text_nospecial, hyp)
    masks: List[Mask]  # per utterance, its (enc, dec) binary gate mask
    langs: List[Optional[str]]  # per utterance, the identified language (lang_sym "none"), else None
    #: seconds: encoding (features, gate predictor, encoder), beam search, the gate predictor's share of
    #: encoding, the CTC prefix scorer's share of the beam search (None where ESPnet's search ran)
    timing: Dict[str, Optional[float]] = field(default_factory=lambda: dict.fromkeys(TIMES, 0.0))
    #: per decoder call of a batched search: (prefix length, utterances, rows per utterance)
    search_log: List[Tuple[int, List[int], int]] = field(default_factory=list)
    #: the (encoder, decoder) sparsity a budgeted model's predicted masks were asked for (``sparsity=``), else
    #: None (also where every mask was forced)
    budget: Optional[Tuple[float, float]] = None


def nbest_results(nbest_hyps, sos: int, blank_id: int, converter, tokenizer) -> list:
    """ESPnet's n-best list of ``(text, token, token_int, text_nospecial, hypothesis)`` (its ``Speech2Text``'s
    output) from hypotheses: the tokens after ``<sos>`` (the prompt's language and task first), no blanks."""
    results = []
    for hyp in nbest_hyps:
        token_int = hyp.yseq[:-1].tolist()
        token_int = token_int[token_int.index(sos) + 1 :]
        token_int = [t for t in token_int if t != blank_id]
        token = converter.ids2tokens(token_int)
        token_nospecial = [x for x in token if not (x[0] == "<" and x[-1] == ">")]
        text = text_nospecial = None
        if tokenizer is not None:
            text = tokenizer.tokens2text(token)
            text_nospecial = tokenizer.tokens2text(token_nospecial)
        results.append((text, token, token_int, text_nospecial, hyp))
    return results
