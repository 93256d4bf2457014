"""What the benchmark decodes: the variants, each a model and a way of decoding it.

* ``dense``: ESPnet's model and decoding;
* ``all_open``: the gated model with every gate open;
* ``all_open_nocache``: the same with our decoder caches off (cross- and self-attention
  keys/values recomputed every step as ESPnet does): the same arithmetic as ``dense``, so
  its time against ``dense`` is the overhead of the gated code itself;
* ``predicted`` (random weights: the untrained predictor keeps every gate open, so this
  times the gate predictor) or ``learned`` (a trained model: its masks);
* ``learned@<s>``: a budget-conditioned model (``sparsity_conf.budget``) asked for skip rate ``s``
  (``--sparsity``): its predicted masks at that budget, the predictor's share of the time beside;
* ``<side>@<s>``: forced masks closing a fraction ``s`` of the gated modules of the
  encoder, the decoder or both (:func:`spread_mask`);
* ``exported``: ``espnet_gated.bin.export`` of one mask, closed modules' weights and the
  predictor removed (``export_ref``: the gated model with that mask, when no other variant has it).

Throughput mode (:func:`throughput_variants`) decodes fewer, each per batch size.
"""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES

SIDES = ("enc", "dec", "both")


@dataclass
class Variant:
    name: str
    kind: str  # dense | gated | exported: the model it decodes (a key of build_decoders' dict)
    side: str = "-"
    sparsity: float = 0.0
    enc_mask: Optional[torch.Tensor] = None  # forced keep masks (None: predicted / none)
    dec_mask: Optional[torch.Tensor] = None
    cache: bool = True
    predictor: bool = False
    budget: Optional[float] = None  # the sparsity asked of a budget-conditioned predictor
    batch: int = 1  # throughput mode: utterances decoded together
    search: str = "ours"  # throughput mode: the multi-utterance search (ours or ESPnet's, see inference.SEARCHES)
    records: List[Dict] = field(default_factory=list)

    def masks(self) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The (enc, dec) masks a gated variant decodes with instead of the predicted ones, or None."""
        return (self.enc_mask, self.dec_mask) if self.kind == "gated" and self.enc_mask is not None else None

    def budget_request(self) -> Dict[str, float]:
        """The ``sparsity=`` keyword of a decode call for this variant (none without a budget)."""
        return {} if self.budget is None else {"sparsity": self.budget}


def budget_variants(budgets: List[float], batch: int = 1) -> List[Variant]:
    """``learned@<s>`` per budget of ``--sparsity``."""
    return [
        Variant(f"learned@{s:g}", "gated", side="pred", sparsity=s, predictor=True, budget=s, batch=batch)
        for s in budgets
    ]


def spread_mask(n_layers: int, n_types: int, sparsity: float) -> torch.Tensor:
    """Binary keep mask closing round(sparsity * n) modules spread over layers and types
    (layer l closes types (l + r) mod n_types for rounds r = 0, 1, ...; encoder types
    ffn_macaron, attn, cgmlp, ffn; decoder self_attn, src_attn, ffn)."""
    n_close = int(math.floor(sparsity * n_layers * n_types + 0.5))
    mask = torch.ones(n_layers, n_types)
    order = [(layer, (layer + r) % n_types) for r in range(n_types) for layer in range(n_layers)]
    for layer, t in order[:n_close]:
        mask[layer, t] = 0
    return mask


def side_masks(side: str, sparsity: float, n_enc: int, n_dec: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(enc, dec) keep masks closing ``sparsity`` of the modules of ``side`` (enc, dec or both), the rest open."""
    enc = spread_mask(n_enc, len(ENCODER_MODULES), sparsity if side in ("enc", "both") else 0.0)
    dec = spread_mask(n_dec, len(DECODER_MODULES), sparsity if side in ("dec", "both") else 0.0)
    return enc, dec


def all_open(n_enc: int, n_dec: int) -> Tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(n_enc, len(ENCODER_MODULES)), torch.ones(n_dec, len(DECODER_MODULES))


def latency_variants(args, n_enc: int, n_dec: int, trained: bool, export_masks) -> List[Variant]:
    """The variants of the module docstring, per ``--sides`` and ``--sparsities``; the exported
    model's last when ``export_masks`` (its (enc, dec) masks) are given."""
    ones_e, ones_d = all_open(n_enc, n_dec)
    variants = [
        Variant("dense", "dense"),
        Variant("all_open", "gated", enc_mask=ones_e, dec_mask=ones_d),
        Variant("all_open_nocache", "gated", enc_mask=ones_e, dec_mask=ones_d, cache=False),
        Variant("learned" if trained else "predicted", "gated", side="pred", predictor=True),
        *budget_variants(args.sparsity),
    ]
    for side in args.sides:
        for s in args.sparsities:
            enc, dec = side_masks(side, s, n_enc, n_dec)
            variants.append(Variant(f"{side}@{s:g}", "gated", side=side, sparsity=s, enc_mask=enc, dec_mask=dec))
    if export_masks is not None:
        enc, dec = export_masks
        if not any(v.enc_mask is not None and _has_masks(v, enc, dec) for v in variants if v.kind == "gated"):
            variants.append(Variant("export_ref", "gated", side="export", enc_mask=enc, dec_mask=dec))
        variants.append(Variant("exported", "exported", side="export", enc_mask=enc, dec_mask=dec))
    return variants


def _has_masks(v: Variant, enc: torch.Tensor, dec: torch.Tensor) -> bool:
    return torch.equal(v.enc_mask, enc) and torch.equal(v.dec_mask, dec)


def throughput_variants(args, n_enc: int, n_dec: int, trained: bool) -> List[Variant]:
    """ESPnet's dense decoding (one utterance at a time), then per batch size the gated model
    with every gate open, with its predicted (learned) masks and with 50% decoder sparsity; for
    batches of several utterances also the first two with ESPnet's own search instead of ours
    (``+espnet_search``: utterance-batched on 202611, one utterance at a time on 202511)."""
    ones_e, ones_d = all_open(n_enc, n_dec)
    dec50 = spread_mask(n_dec, len(DECODER_MODULES), 0.5)
    predicted = "learned" if trained else "predicted"
    variants = [Variant("dense", "dense")]
    for b in args.batch:
        variants += [
            Variant("all_open", "gated", enc_mask=ones_e, dec_mask=ones_d, batch=b),
            Variant(predicted, "gated", side="pred", predictor=True, batch=b),
            Variant("dec@0.5", "gated", side="dec", sparsity=0.5, enc_mask=ones_e, dec_mask=dec50, batch=b),
            *budget_variants(args.sparsity, b),
        ]
        if b > 1:
            variants += [
                Variant("all_open+espnet_search", "gated", enc_mask=ones_e, dec_mask=ones_d, batch=b, search="espnet"),
                Variant(f"{predicted}+espnet_search", "gated", side="pred", predictor=True, batch=b, search="espnet"),
            ]
    return variants
