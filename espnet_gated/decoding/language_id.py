"""Language identification with the gated model (``lang_sym="none"``, ``--lang_sym none``).

The gate rule: each of :func:`candidate_languages` is tried with its own gates, the mask the gate predictor
gives the utterance with that language and the task (as in training, where the decoder predicts ``<lang>``
after ``<sos>`` from the encoder output under the true language's mask); the decoder scores one step after
``<sos>`` (as ESPnet's ``Speech2Language`` does for OWSM) and the language whose own mask gives it the highest
probability wins. The candidates are encoded as one batch (one row per language: K candidates cost K encoder
passes of the utterance). ``gate_mode="all_open"`` tries every language with every module open (one mask, like
a dense OWSM); an exported model has one fixed mask.
"""

from typing import List, Optional, Tuple

import torch

from espnet_gated.data.symbols import token_kind

#: the lang_sym that asks for language identification (``--lang_sym none``, also ``<none>``)
IDENTIFY = "none"


def wants_identification(lang_sym: Optional[str]) -> bool:
    return isinstance(lang_sym, str) and lang_sym.strip("<>") == IDENTIFY


def candidate_languages(model) -> List[str]:
    """The language tokens that language identification chooses from: the model's language
    tokens (``<deu>``, ... in OWSM's block ``<abk>`` .. ``<zul>``) that the gate predictor
    trained on (all of them for a model that did not record its contexts)."""
    langs = [t for t in model.token_list if token_kind(t) == "lang"]
    trained, _ = model.gate_predictor.trained_contexts()
    return [t for t in langs if t in trained] if trained else langs


def rank_languages(
    model, enc: torch.Tensor, enc_lens: torch.Tensor, dec_gates: Optional[torch.Tensor], candidates: List[str]
) -> List[Tuple[str, float]]:
    """``candidates`` with their probabilities, best first, from the encoder output of one utterance with
    each candidate's gates (rows of ``enc`` and ``dec_gates`` in the order of ``candidates``), or of one row
    for every candidate (an exported model's fixed mask, ``dec_gates`` None)."""
    rows = enc.size(0)
    ids = torch.tensor([model.token_list.index(t) for t in candidates], device=enc.device)
    sos = torch.full((rows, 1), model.sos, dtype=torch.long, device=enc.device)
    ones = torch.ones(rows, dtype=torch.long, device=enc.device)
    logits, _ = model.decoder(enc, enc_lens, sos, ones, gates=dec_gates)
    probs = torch.softmax(logits[:, 0, ids].float(), -1)  # (rows, candidates)
    # each language scored under its own mask: the probability its row gives it
    own = probs[0] if rows == 1 else probs.diagonal()
    own = own / own.sum()
    order = torch.argsort(own, descending=True).tolist()
    return [(candidates[i], float(own[i])) for i in order]
