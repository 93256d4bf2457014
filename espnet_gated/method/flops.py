"""Analytic cost model (multiply-accumulates) of the gateable modules.

Used for three things that must agree: the ``weighting: flops`` sparsity target (a
compute budget instead of a module count), the executed-FLOPs columns of RESULTS.md,
and the FLOPs-ideal speed-up of the benchmark. Weight matmuls cost one MAC per weight
per position (``Linear`` and ``Conv1d`` weights, whatever the module's shape), attention
adds its two activation matmuls. Norms, activations and biases are ignored.

Decoding costs follow how the decoder runs: ESPnet's decoder recomputes the
self-attention keys/values over the whole prefix and the cross-attention keys/values
over all encoder frames at every step and for every hypothesis; with
``cache_src_kv=True`` (espnet_gated's decoder) cross-attention keys/values are computed
once per utterance, with ``cache_self_kv=True`` self-attention keys/values once per
position.

:func:`search_macs` counts a beam search step by step as it ran (hypotheses per step,
prefix length); :func:`input_layer_macs` and :func:`ctc_macs` add the parts no gate
removes (convolutional subsampling, the CTC projection used by CTC prefix scoring), so
that ``dense MACs / executed MACs`` is the speed-up a FLOP-bound machine would reach.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch

from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES


def weight_macs(module: Optional[torch.nn.Module]) -> int:
    """MACs per position of all Linear/Conv1d weights inside ``module``."""
    if module is None:
        return 0
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)))


def _attn_parts(attn: torch.nn.Module):
    """(d_model, MACs per position of q+out, of k+v) for an ESPnet attention module."""
    d = attn.linear_q.in_features
    qo = attn.linear_q.weight.numel() + attn.linear_out.weight.numel()
    kv = attn.linear_k.weight.numel() + attn.linear_v.weight.numel()
    return d, qo, kv


def encoder_layer_costs(encoder, n_frames: float) -> Dict[str, float]:
    """MACs of each module of one encoder layer for ``n_frames`` subsampled frames.

    Keys: the gateable modules, plus ``merge`` (both branches open) and ``merge_half``
    (one branch open).
    """
    layer = encoder.encoders[0]
    t = float(n_frames)
    d = encoder.output_size()
    costs = {m: 0.0 for m in ENCODER_MODULES}
    for name in ("feed_forward_macaron", "feed_forward"):
        costs[name] = t * weight_macs(getattr(layer, name))
    costs["attn"] = t * weight_macs(layer.attn) + 2.0 * t * t * d
    costs["cgmlp"] = t * weight_macs(layer.cgmlp)
    costs["merge"] = t * (weight_macs(layer.merge_proj) + weight_macs(layer.depthwise_conv_fusion))
    costs["merge_half"] = costs["merge"] / 2.0
    return costs


def encoder_macs(encoder, n_frames: float, mask: Optional[torch.Tensor] = None) -> float:
    """Executed MACs of all encoder layers; mask (n_layers, 4) binary or None (dense)."""
    c = encoder_layer_costs(encoder, n_frames)
    n_layers = len(encoder.encoders)
    keep = torch.ones(n_layers, len(ENCODER_MODULES)) if mask is None else (mask > 0.5).float().cpu()
    total = 0.0
    for row in keep.tolist():
        total += sum(c[m] * k for m, k in zip(ENCODER_MODULES, row, strict=False))
        n_branches = row[ENCODER_MODULES.index("attn")] + row[ENCODER_MODULES.index("cgmlp")]
        total += {2: c["merge"], 1: c["merge_half"], 0: 0.0}[int(n_branches)]
    return total


def decoder_layer_costs(
    decoder,
    n_frames: float,
    prefix_len: float,
    teacher_forcing: bool,
    cache_src_kv: bool = False,
    cache_self_kv: bool = False,
) -> Dict[str, float]:
    """MACs of each module of one decoder layer.

    teacher_forcing: all ``prefix_len`` positions at once (training; with
    ``cache_src_kv`` the cross-attention key/value projections are left out).
    Otherwise one incremental step of one hypothesis whose prefix has ``prefix_len``
    tokens (the step computes only the last position; with ``cache_self_kv`` only its
    self-attention key/value).
    """
    layer = decoder.decoders[0]
    t, n = float(n_frames), float(prefix_len)
    d, qo, kv = _attn_parts(layer.self_attn)
    _, src_qo, src_kv = _attn_parts(layer.src_attn)
    ff = weight_macs(layer.feed_forward)
    if teacher_forcing:
        return {
            "self_attn": n * (qo + kv) + 2.0 * n * n * d,
            "src_attn": n * src_qo + (0.0 if cache_src_kv else t * src_kv) + 2.0 * n * t * d,
            "feed_forward": n * ff,
        }
    return {
        "self_attn": qo + (1.0 if cache_self_kv else n) * kv + 2.0 * n * d,
        "src_attn": src_qo + (0.0 if cache_src_kv else t * src_kv) + 2.0 * t * d,
        "feed_forward": float(ff),
    }


def decode_macs(
    decoder,
    n_frames: float,
    n_steps: int,
    mask: Optional[torch.Tensor] = None,
    n_hyps: int = 1,
    cache_src_kv: bool = False,
    cache_self_kv: bool = False,
) -> float:
    """Executed MACs of an incremental decode of ``n_steps`` tokens with ``n_hyps``
    hypotheses per step (the beam), including the output projection (see
    :func:`search_macs` for a search counted as it ran)."""
    n_layers = len(decoder.decoders)
    keep = torch.ones(n_layers, len(DECODER_MODULES)) if mask is None else (mask > 0.5).float().cpu()
    per_layer_open = keep.sum(0).tolist()  # open layers per module type
    out_proj = weight_macs(decoder.output_layer)
    total = 0.0
    for step in range(1, n_steps + 1):
        c = decoder_layer_costs(
            decoder, n_frames, step, teacher_forcing=False, cache_src_kv=cache_src_kv, cache_self_kv=cache_self_kv
        )
        total += n_hyps * (sum(c[m] * k for m, k in zip(DECODER_MODULES, per_layer_open, strict=False)) + out_proj)
    if cache_src_kv:
        _, _, src_kv = _attn_parts(decoder.decoders[0].src_attn)
        total += per_layer_open[DECODER_MODULES.index("src_attn")] * n_frames * src_kv
    return total


def search_macs(
    decoder,
    n_frames: float,
    steps: Sequence[Tuple[int, int]],
    mask: Optional[torch.Tensor] = None,
    cache_src_kv: bool = False,
    cache_self_kv: bool = False,
) -> float:
    """Executed MACs of a beam search as it ran: ``steps`` lists each decoder call as
    (rows, positions) - hypotheses scored and the prefix length they have.

    The first call has no cache and computes every position of the prefix (the
    ``<sos><lang><task><notimestamps>`` primer); later calls compute the last position.
    Only the last position goes through the output projection. With ``cache_src_kv``
    the cross-attention keys/values are projected once (for the layers whose
    ``src_attn`` is open), else for every row at every call.
    """
    n_layers = len(decoder.decoders)
    keep = torch.ones(n_layers, len(DECODER_MODULES)) if mask is None else (mask > 0.5).float().cpu()
    per_layer_open = keep.sum(0).tolist()
    out_proj = weight_macs(decoder.output_layer)
    _, _, src_kv = _attn_parts(decoder.decoders[0].src_attn)
    total = 0.0
    for i, (rows, positions) in enumerate(steps):
        if i == 0:
            c = decoder_layer_costs(decoder, n_frames, positions, teacher_forcing=True, cache_src_kv=True)
        else:
            c = decoder_layer_costs(
                decoder, n_frames, positions, teacher_forcing=False, cache_src_kv=True, cache_self_kv=cache_self_kv
            )
        if not cache_src_kv:
            c["src_attn"] += n_frames * src_kv
        total += rows * (sum(c[m] * k for m, k in zip(DECODER_MODULES, per_layer_open, strict=True)) + out_proj)
    if cache_src_kv and steps:
        total += per_layer_open[DECODER_MODULES.index("src_attn")] * n_frames * src_kv
    return total


def input_layer_macs(encoder, n_feat_frames: int, feat_dim: int) -> float:
    """MACs of the encoder's input layer (e.g. Conv2dSubsampling) for one utterance of
    ``n_feat_frames`` feature frames: Conv1d/Conv2d/Linear weights counted at the output
    positions they produce, measured by running the layer once on zeros."""
    embed = getattr(encoder, "embed", None)
    if embed is None:
        return 0.0
    total = [0.0]

    def hook(module, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, torch.nn.Linear):
            total[0] += out.numel() / module.out_features * module.weight.numel()
        else:  # convolution: weights per output channel times output positions
            total[0] += out.numel() * module.weight[0].numel()

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
    handles = [m.register_forward_hook(hook) for m in embed.modules() if isinstance(m, kinds)]
    try:
        p = next(encoder.parameters())
        x = torch.zeros(1, int(n_feat_frames), int(feat_dim), device=p.device, dtype=p.dtype)
        mask = torch.ones(1, 1, int(n_feat_frames), dtype=torch.bool, device=p.device)
        with torch.no_grad():
            try:
                embed(x, mask)
            except TypeError:
                embed(x)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def ctc_macs(ctc, n_frames: float) -> float:
    """MACs of the CTC projection over ``n_frames`` encoder frames (CTC prefix scoring
    computes it once per utterance)."""
    return float(n_frames) * weight_macs(getattr(ctc, "ctc_lo", None))


def slot_costs(model, slots: Sequence, n_frames: float, n_tokens: float) -> torch.Tensor:
    """Training-time MACs of each gated slot (for ``weighting: flops``).

    An encoder branch also carries half of its layer's merge, which runs only while at
    least one branch is open.
    """
    enc = encoder_layer_costs(model.encoder, n_frames)
    dec = decoder_layer_costs(model.decoder, n_frames, n_tokens, teacher_forcing=True)
    costs = []
    for slot in slots:
        if slot.side == "enc":
            extra = enc["merge_half"] if slot.module in ("attn", "cgmlp") else 0.0
            costs.append(enc[slot.module] + extra)
        else:
            costs.append(dec[slot.module])
    return torch.tensor(costs)
