"""E-Branchformer encoder whose modules can be switched off per utterance.

The class subclasses ESPnet's :class:`EBranchformerEncoder` and keeps every submodule
and its name, so a dense (OWSM) state dict loads unchanged; only ``forward`` differs.

Gates are a (B, n_layers, 4) tensor over :data:`~espnet_gated.method.layout.ENCODER_MODULES`:

* training: every module is computed and its output multiplied by its gate (all
  parameters get gradients, which DDP with ``unused_parameters: false`` requires);
* inference: gates are binary and a closed module is not computed; in a batch whose rows
  differ, each module runs only on the rows that keep it. A padded batch gives each
  utterance the output it gets alone: the masks hold each utterance's own frames after the
  input layer, and padded frames are zeroed before the cgMLP's and the merge's depthwise
  convolutions (ESPnet's layer lets the padding leak into the last frames of shorter
  utterances through both).

The merge of the two branches is not gated itself. A closed branch contributes zeros
to the merge input (at inference the merge then runs on the open half only, with the
closed half's constant depthwise-conv bias folded into the projection bias). When both
branches are closed the merge is skipped too: its output would be a constant vector
that no longer depends on the utterance. Training applies the same rule by scaling the
merge output with ``1 - (1 - g_attn) * (1 - g_cgmlp)``, so training and inference compute
the same function.

An encoder built with ``static_mask`` (an exported model, see ``espnet_gated.method.pruning``) has
its closed modules removed and always runs that mask.
"""

from contextlib import nullcontext
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar, Union

import torch
import torch.nn.functional as F
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.layers.fastformer import FastSelfAttention

from espnet_gated.compat import (
    STOCK_ZEROES_PADDING,
    SUBSAMPLING_LAYERS,
    TooShortUttError,
    check_short_utt,
    make_pad_mask,
)
from espnet_gated.method.layout import ENCODER_MODULES, parse_side
from espnet_gated.method.pruning import prune_encoder, refuse_gates
from espnet_gated.method.rows import add_on_rows, add_rows, rows_of, take

FFM, ATTN, CGMLP, FF = range(len(ENCODER_MODULES))
#: what ``forward``'s ``predict_gates`` returns (the model's ``GateState``)
Gates = TypeVar("Gates")
#: which branches a group of rows keeps: (attn, cgmlp)
_BRANCH_PATTERNS = ((True, True), (True, False), (False, True))


def _self_attention(layer, x, pos_emb, mask):
    if isinstance(layer.attn, FastSelfAttention):
        return layer.attn(x, mask)
    if pos_emb is not None:
        return layer.attn(x, x, x, pos_emb, mask)
    return layer.attn(x, x, x, mask)


def _attn_branch(layer, x, pos_emb, mask):
    return layer.dropout(_self_attention(layer, layer.norm_mha(x), pos_emb, mask))


def _zero_padding(x: torch.Tensor, pad: Optional[torch.Tensor]) -> torch.Tensor:
    """``x`` (B, T, C) with the padded frames (``pad`` (B, T, 1), True = padding) set to zero:
    what a convolution reads beyond the end of an utterance decoded alone."""
    return x if pad is None else x.masked_fill(pad, 0.0)


def _cgmlp_branch(layer, x, mask, pad: Optional[torch.Tensor] = None):
    """The cgMLP branch; with ``pad`` given, padded frames are zeroed before its depthwise convolution.

    202611's ``ConvolutionalGatingMLP`` does that itself from ``mask``; 202511's ignores the mask, so
    there the branch is computed here with the zeroing added (``compat.STOCK_ZEROES_PADDING``)."""
    if pad is None or STOCK_ZEROES_PADDING:
        out = layer.cgmlp(layer.norm_mlp(x), mask)
        return layer.dropout(out[0] if isinstance(out, tuple) else out)
    cgmlp = layer.cgmlp
    csgu = cgmlp.csgu
    x_r, x_g = cgmlp.channel_proj1(layer.norm_mlp(x)).chunk(2, dim=-1)
    x_g = csgu.conv(_zero_padding(csgu.norm(x_g), pad).transpose(1, 2)).transpose(1, 2)
    if csgu.linear is not None:
        x_g = csgu.linear(x_g)
    out = csgu.dropout(x_r * csgu.act(x_g))
    return layer.dropout(cgmlp.channel_proj2(out))


def _merge(layer, x1, x2, pad: Optional[torch.Tensor] = None):
    x_concat = torch.cat([x1, x2], dim=-1)
    x_tmp = layer.depthwise_conv_fusion(_zero_padding(x_concat, pad).transpose(1, 2)).transpose(1, 2)
    return layer.dropout(layer.merge_proj(x_concat + x_tmp))


def _merge_one_branch(layer, x_open, open_half: int, pad: Optional[torch.Tensor] = None):
    """The merge when one branch is closed (its input is all zeros).

    Depthwise convolution keeps channels apart, so the closed half of ``x_concat +
    dwconv(x_concat)`` is the constant conv bias of those channels; its projection folds
    into the output bias and only the open half is computed. A layer pruned by
    ``espnet_gated.method.pruning`` holds only the open half (bias already folded).
    """
    d = x_open.size(-1)
    conv, proj = layer.depthwise_conv_fusion, layer.merge_proj
    if conv.in_channels == d:  # statically pruned
        x_tmp = conv(_zero_padding(x_open, pad).transpose(1, 2)).transpose(1, 2)
        return layer.dropout(proj(x_open + x_tmp))
    keep = slice(0, d) if open_half == 0 else slice(d, 2 * d)
    drop = slice(d, 2 * d) if open_half == 0 else slice(0, d)
    x_tmp = F.conv1d(
        _zero_padding(x_open, pad).transpose(1, 2),
        conv.weight[keep],
        conv.bias[keep],
        padding=conv.padding,
        groups=d,
    ).transpose(1, 2)
    bias = proj.bias + proj.weight[:, drop] @ conv.bias[drop]
    return layer.dropout(F.linear(x_open + x_tmp, proj.weight[:, keep], bias))


class EncoderPlan:
    """Row selections for every layer of one inference batch (see ``rows.py``)."""

    def __init__(self, mask: torch.Tensor):
        keep = (mask > 0.5).cpu()  # the batch's one synchronisation for the gates
        device = mask.device
        self.layers = []
        for layer in range(keep.size(1)):
            k = keep[:, layer]
            groups = []
            for use_attn, use_cgmlp in _BRANCH_PATTERNS:
                rows = rows_of((k[:, ATTN] == use_attn) & (k[:, CGMLP] == use_cgmlp), device)
                if rows is not None:
                    groups.append(((use_attn, use_cgmlp), rows))
            self.layers.append((rows_of(k[:, FFM], device), groups, rows_of(k[:, FF], device)))


class GatedEBranchformerEncoder(EBranchformerEncoder):
    """ESPnet's E-Branchformer encoder with per-utterance module gates.

    Same constructor and options as ``e_branchformer``. ``forward`` takes the gates (``gates``), or
    predicts them from the input layer's output (``predict_gates``) and returns them; without either
    the encoder is exactly the dense one (ESPnet's own ``forward``).
    """

    def __init__(self, *args, static_mask: Union[str, Sequence[Sequence[int]], None] = None, **kwargs):
        super().__init__(*args, **kwargs)
        layer = self.encoders[0]
        self._present = [m for m in ENCODER_MODULES if getattr(layer, m, None) is not None]
        self.static_mask: Optional[torch.Tensor] = None
        self._static_plan = None
        if static_mask is not None:
            self.static_mask = parse_side("enc", static_mask, len(self.encoders))
            prune_encoder(self, self.static_mask)
            self._static_plan = EncoderPlan(self.static_mask.unsqueeze(0))

    def present_modules(self) -> List[str]:
        """Gateable modules the layers were built with."""
        return list(self._present)

    def embed_input(self, xs_pad: torch.Tensor, ilens: torch.Tensor):
        """Input layer (subsampling + positional encoding) -> (xs, masks).

        ``xs`` is a tensor, or a tuple (x, pos_emb) for relative positional encoding;
        masks: (B, 1, T') bool, True = valid frame. At inference the masks hold each
        utterance's own frames (:meth:`own_masks`): 202511's input layer slices the padded
        batch's mask, which gives a shorter utterance one or two extra frames whose
        convolution windows reach into the padding.
        """
        masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        if isinstance(self.embed, SUBSAMPLING_LAYERS):
            # in training the batch decides (ESPnet's rule); at inference the shortest utterance
            n_frames = xs_pad.size(1) if self.training else int(ilens.min())
            short, limit = check_short_utt(self.embed, n_frames)
            if short:
                raise TooShortUttError(
                    f"has {n_frames} frames and is too short for subsampling "
                    f"(it needs more than {limit} frames), return empty results",
                    n_frames,
                    limit,
                )
            xs_pad, masks = self.embed(xs_pad, masks)
            if not self.training:
                masks = self.own_masks(ilens, masks)
        elif self.embed is not None:
            xs_pad = self.embed(xs_pad)
        return xs_pad, masks

    def own_lengths(self, ilens: torch.Tensor) -> torch.Tensor:
        """(B,) frames after the input layer of utterances of ``ilens`` input frames, each as if
        alone: the output length of the input layer's time convolutions (no padding)."""
        own = ilens
        for conv in self.embed.modules() if isinstance(self.embed, SUBSAMPLING_LAYERS) else ():
            if isinstance(conv, (torch.nn.Conv1d, torch.nn.Conv2d)):  # time is the first kernel axis of both
                span = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
                own = torch.div(own + 2 * conv.padding[0] - span, conv.stride[0], rounding_mode="floor") + 1
        return own

    def own_masks(self, ilens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``masks`` (B, 1, T') without the frames that exist only because of the batch's padding."""
        own = self.own_lengths(ilens).to(masks.device)
        return masks & (torch.arange(masks.size(-1), device=masks.device) < own.unsqueeze(1)).unsqueeze(1)

    def _input_precision(self, xs_pad: torch.Tensor):
        """At inference the input layer and the gate decision run in float32 also under autocast
        (half-precision decoding): the gates are those of float32 decoding, and the residual stream
        of the layers stays float32. Returns (features, context manager)."""
        if self.training:
            return xs_pad, nullcontext()
        if torch.is_autocast_enabled(xs_pad.device.type):
            xs_pad = xs_pad.float()  # features of a frontend that ran under autocast
        return xs_pad, torch.autocast(xs_pad.device.type, enabled=False)

    def forward_layers(
        self,
        xs,
        masks: torch.Tensor,
        gates: Optional[torch.Tensor] = None,
        ctc=None,
        max_layer: Optional[int] = None,
        return_all_hs: bool = False,
    ):
        """Run the layers on embedded input; see the module docstring for ``gates``."""
        plan = None
        refuse_gates("encoder", self.static_mask, gates)
        if self.static_mask is not None:
            plan = self._static_plan
        elif gates is not None and not self.training:
            plan = EncoderPlan(gates)
        # padded frames, zeroed before the time convolutions of a layer: at inference always (each
        # utterance gets the output it gets alone), in training where the stock layer does it too
        pad = None
        if masks.size(0) > 1 and (plan is not None or (gates is not None and STOCK_ZEROES_PADDING)):
            pad = (~masks).transpose(1, 2)
        intermediate_outs = []
        for layer_idx, layer in enumerate(self.encoders):
            if max_layer is not None and layer_idx >= max_layer:
                break
            if self.training and torch.rand(1).item() < self.layer_drop_rate:
                continue
            if plan is not None:
                xs = self._layer_inference(layer, xs, masks, plan.layers[layer_idx], pad)
            elif gates is None:
                xs, masks = layer(xs, masks)
            elif layer_idx + 1 in self.gradient_checkpoint_layers:
                xs = torch.utils.checkpoint.checkpoint(
                    self._layer_training,
                    layer,
                    xs,
                    masks,
                    gates[:, layer_idx],
                    pad,
                    use_reentrant=False,
                )
            else:
                xs = self._layer_training(layer, xs, masks, gates[:, layer_idx], pad)
            hidden = xs[0] if isinstance(xs, tuple) else xs
            if return_all_hs:
                intermediate_outs.append(hidden)
            elif layer_idx + 1 in self.interctc_layer_idx:
                intermediate_outs.append((layer_idx + 1, hidden))
                if self.interctc_use_conditioning:
                    hidden = hidden + self.conditioning_layer(ctc.softmax(hidden))
                    xs = (hidden, xs[1]) if isinstance(xs, tuple) else hidden
        if isinstance(xs, tuple):
            xs = xs[0]
        xs = self.after_norm(xs)
        olens = masks.squeeze(1).sum(1)
        if intermediate_outs:
            return (xs, intermediate_outs), olens, None
        return xs, olens, None

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc=None,
        max_layer: int = None,
        return_all_hs: bool = False,
        gates: Optional[torch.Tensor] = None,
        predict_gates: Optional[Callable[[torch.Tensor, torch.Tensor], Gates]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[Gates]]:
        """ESPnet's ``forward`` with every module open (the dense encoder: ESPnet's own), or with
        ``gates`` (B, n_layers, 4), or with the static mask of an exported encoder.

        ``predict_gates(x, own_masks)``, called on the input layer's output (x (B, T', D); the
        masks of each utterance's own frames, see :meth:`own_masks`), returns the gate state whose
        ``enc`` (B, n_layers, 4) runs the layers; it is returned in the place of ESPnet's (unused)
        encoder states: (output, lengths, gate state)."""
        if gates is None and predict_gates is None and self.static_mask is None:
            return super().forward(xs_pad, ilens, prev_states, masks, ctc, max_layer, return_all_hs)
        xs_pad, precision = self._input_precision(xs_pad)
        state = None
        with precision:
            xs, masks = self.embed_input(xs_pad, ilens)
            if predict_gates is not None:
                state = predict_gates(xs[0] if isinstance(xs, tuple) else xs, self.own_masks(ilens, masks))
                gates = state.enc
        out, olens, _ = self.forward_layers(xs, masks, gates, ctc, max_layer, return_all_hs)
        return out, olens, state

    @staticmethod
    def _layer_training(layer, xs, mask, g, pad: Optional[torch.Tensor] = None):
        """Every module computed and scaled by its gate. g: (B, 4); ``pad`` where the stock layer
        zeroes padded frames before its convolutions (see ``compat``)."""
        x, pos_emb = xs if isinstance(xs, tuple) else (xs, None)
        g = g[:, :, None, None].unbind(1)  # 4 x (B, 1, 1)
        if layer.feed_forward_macaron is not None:
            ffm = layer.feed_forward_macaron(layer.norm_ff_macaron(x))
            x = x + layer.ff_scale * g[FFM] * layer.dropout(ffm)
        x1 = g[ATTN] * _attn_branch(layer, x, pos_emb, mask)
        x2 = g[CGMLP] * _cgmlp_branch(layer, x, mask)
        merge_gate = g[ATTN] + g[CGMLP] - g[ATTN] * g[CGMLP]
        x = x + merge_gate * _merge(layer, x1, x2, pad)
        if layer.feed_forward is not None:
            ff = layer.feed_forward(layer.norm_ff(x))
            x = x + layer.ff_scale * g[FF] * layer.dropout(ff)
        x = layer.norm_final(x)
        return (x, pos_emb) if pos_emb is not None else x

    @staticmethod
    def _layer_inference(layer, xs, mask, plan, pad: Optional[torch.Tensor] = None):
        """Closed modules are not computed; rows run only the modules they keep. ``pad``
        (B, T, 1), True = padded frame: zeroed before the layer's convolutions, so that each
        utterance's output is the one it gets alone."""
        x, pos_emb = xs if isinstance(xs, tuple) else (xs, None)
        ffm_rows, branch_groups, ff_rows = plan
        if layer.feed_forward_macaron is not None:
            x = add_on_rows(
                x,
                ffm_rows,
                lambda h: layer.ff_scale * layer.dropout(layer.feed_forward_macaron(layer.norm_ff_macaron(h))),
            )
        x_in = x
        for (use_attn, use_cgmlp), rows in branch_groups:
            h, m, p = take(rows, x_in), take(rows, mask), take(rows, pad)
            if use_attn and use_cgmlp:
                y = _merge(layer, _attn_branch(layer, h, pos_emb, m), _cgmlp_branch(layer, h, m, p), p)
            elif use_attn:
                y = _merge_one_branch(layer, _attn_branch(layer, h, pos_emb, m), 0, p)
            else:
                y = _merge_one_branch(layer, _cgmlp_branch(layer, h, m, p), 1, p)
            x = add_rows(x, rows, y)
        if layer.feed_forward is not None:
            x = add_on_rows(
                x,
                ff_rows,
                lambda h: layer.ff_scale * layer.dropout(layer.feed_forward(layer.norm_ff(h))),
            )
        x = layer.norm_final(x)
        return (x, pos_emb) if pos_emb is not None else x
