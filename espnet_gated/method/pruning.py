"""Static pruning: a gated model with one fixed mask turned into a smaller model.

For a context-only gate predictor (``gate_conf: {use_audio: false}``) the mask depends on
the language-task pair only, so a model serving one pair can drop the modules its mask
closes and the predictor itself. The exported model is ESPnet's plain S2T model
(``model: espnet``) with our encoder and decoder built with ``static_mask``: their
constructors remove the closed modules, so the saved state dict holds no weights for them
(see ``espnet_gated.bin.export``).

Removed per encoder layer (module order of ``layout.ENCODER_MODULES``):

* a closed FFN / macaron FFN / branch: the module and its pre-norm;
* both branches closed: also the merge (``depthwise_conv_fusion``, ``merge_proj``);
* one branch closed: the merge keeps only the open half of its channels; the closed
  half's constant contribution (its depthwise-conv bias through ``merge_proj``) is folded
  into the projection bias, as the gated model computes at inference.

Per decoder layer: a closed ``self_attn`` / ``src_attn`` / ``feed_forward`` and its norm.
"""

from typing import Optional, Sequence

import torch

from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES

ATTN, CGMLP = ENCODER_MODULES.index("attn"), ENCODER_MODULES.index("cgmlp")
#: submodules removed with each closed module
ENCODER_REMOVED = {
    "feed_forward_macaron": ("feed_forward_macaron", "norm_ff_macaron"),
    "attn": ("attn", "norm_mha"),
    "cgmlp": ("cgmlp", "norm_mlp"),
    "feed_forward": ("feed_forward", "norm_ff"),
}
DECODER_REMOVED = {
    "self_attn": ("self_attn", "norm1"),
    "src_attn": ("src_attn", "norm2"),
    "feed_forward": ("feed_forward", "norm3"),
}


def refuse_gates(module: str, static_mask: Optional[torch.Tensor], gates) -> None:
    """An exported (statically pruned) ``module`` runs its static mask only: ValueError if ``gates`` are given."""
    if static_mask is not None and gates is not None:
        raise ValueError(f"this {module} has a static mask (an exported model): it takes no gates")


def _remove(layer: torch.nn.Module, names: Sequence[str]) -> None:
    for name in names:
        if getattr(layer, name, None) is not None:
            setattr(layer, name, None)


@torch.no_grad()
def prune_encoder(encoder, mask: torch.Tensor) -> None:
    """Remove the modules that ``mask`` (n_layers, 4) closes from an E-Branchformer
    encoder, in place (see the module docstring)."""
    for layer, keep in zip(encoder.encoders, (mask > 0.5).tolist(), strict=True):
        for name, kept in zip(ENCODER_MODULES, keep, strict=True):
            if not kept:
                if getattr(layer, name, None) is None:
                    raise ValueError(f"encoder static mask closes '{name}', which this encoder does not have")
                _remove(layer, ENCODER_REMOVED[name])
        if not keep[ATTN] and not keep[CGMLP]:
            _remove(layer, ("depthwise_conv_fusion", "merge_proj"))
        elif keep[ATTN] != keep[CGMLP]:
            conv, proj = layer.depthwise_conv_fusion, layer.merge_proj
            d = conv.in_channels // 2
            open_half = slice(0, d) if keep[ATTN] else slice(d, 2 * d)
            closed_half = slice(d, 2 * d) if keep[ATTN] else slice(0, d)
            half = torch.nn.Conv1d(d, d, conv.kernel_size, stride=1, padding=conv.padding, groups=d, bias=True)
            half = half.to(device=conv.weight.device, dtype=conv.weight.dtype)
            half.weight.copy_(conv.weight[open_half])
            half.bias.copy_(conv.bias[open_half])
            linear = torch.nn.Linear(d, proj.out_features).to(device=proj.weight.device, dtype=proj.weight.dtype)
            linear.weight.copy_(proj.weight[:, open_half])
            linear.bias.copy_(proj.bias + proj.weight[:, closed_half] @ conv.bias[closed_half])
            layer.depthwise_conv_fusion, layer.merge_proj = half, linear


def prune_decoder(decoder, mask: torch.Tensor) -> None:
    """Remove the modules that ``mask`` (n_layers, 3) closes from a Transformer decoder."""
    for layer, keep in zip(decoder.decoders, (mask > 0.5).tolist(), strict=True):
        for name, kept in zip(DECODER_MODULES, keep, strict=True):
            if not kept:
                _remove(layer, DECODER_REMOVED[name])


def is_exported(model) -> bool:
    """True for a statically pruned model (its encoder and decoder built with a ``static_mask``)."""
    return all(getattr(getattr(model, side, None), "static_mask", None) is not None for side in ("encoder", "decoder"))
