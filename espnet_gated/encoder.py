"""E-Branchformer encoder whose modules can be switched off per utterance.

The class subclasses ESPnet's :class:`EBranchformerEncoder` and keeps every submodule
and its name, so a dense (OWSM) state dict loads unchanged; only ``forward`` differs.

Gates are a (B, n_layers, 4) tensor over :data:`~espnet_gated.layout.ENCODER_MODULES`:

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

An encoder built with ``static_mask`` (an exported model, see ``espnet_gated.pruning``) has
its closed modules removed and always runs that mask.
"""

from contextlib import contextmanager, nullcontext
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv1dSubsampling1,
    Conv1dSubsampling2,
    Conv1dSubsampling3,
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
    TooShortUttError,
    check_short_utt,
)
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.layers.fastformer import FastSelfAttention

from espnet_gated.layout import ENCODER_MODULES
from espnet_gated.pruning import parse_side_mask, prune_encoder
from espnet_gated.rows import add_on_rows, add_rows, rows_of, take

FFM, ATTN, CGMLP, FF = range(len(ENCODER_MODULES))
#: how ESPnet's input layers slice the frame mask, ``mask[:, :, :-stop:step]`` per entry, one entry per
#: convolution (kernel ``stop + 1``, stride ``step``, no padding)
_MASK_SLICES = {
    Conv1dSubsampling1: ((2, 1), (2, 1)),
    Conv1dSubsampling2: ((2, 1), (2, 2)),
    Conv1dSubsampling3: ((2, 1), (4, 3)),
    Conv2dSubsampling: ((2, 2), (2, 2)),
    Conv2dSubsampling1: ((4, 1),),
    Conv2dSubsampling2: ((2, 2), (2, 1)),
    Conv2dSubsampling6: ((2, 2), (4, 3)),
    Conv2dSubsampling8: ((2, 2), (2, 2), (2, 2)),
}
_SUBSAMPLING = tuple(_MASK_SLICES)
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
    """The cgMLP branch. ESPnet's ``ConvolutionalGatingMLP`` ignores the mask, so in a padded
    batch its depthwise convolution would read the padding into the last frames of shorter
    utterances; with ``pad`` given, padded frames are zeroed before that convolution."""
    if pad is None:
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
    ``espnet_gated.pruning`` holds only the open half (bias already folded).
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

    Same constructor and options as ``e_branchformer``. ``forward`` takes an extra
    ``gates`` argument; without it the encoder is exactly the dense one.
    """

    _gate_source = None

    def __init__(self, *args, static_mask: Union[str, Sequence[Sequence[int]], None] = None, **kwargs):
        super().__init__(*args, **kwargs)
        layer = self.encoders[0]
        self._present = [m for m in ENCODER_MODULES if getattr(layer, m, None) is not None]
        self.static_mask: Optional[torch.Tensor] = None
        self._static_plan = None
        if static_mask is not None:
            self.static_mask = parse_side_mask("enc", static_mask, len(self.encoders))
            prune_encoder(self, self.static_mask)
            self._static_plan = EncoderPlan(self.static_mask.unsqueeze(0))

    @contextmanager
    def gate_source(self, source: Callable):
        """Inside the block, ``forward`` without ``gates`` asks ``source(xs, masks)`` for
        them, right after the input layer (the gate predictor reads its output)."""
        previous = self._gate_source
        self._gate_source = source
        try:
            yield
        finally:
            self._gate_source = previous

    def present_modules(self) -> List[str]:
        """Gateable modules the layers were built with."""
        return list(self._present)

    def embed_input(self, xs_pad: torch.Tensor, ilens: torch.Tensor, masks: torch.Tensor = None):
        """Input layer (subsampling + positional encoding) -> (xs, masks).

        ``xs`` is a tensor, or a tuple (x, pos_emb) for relative positional encoding;
        masks: (B, 1, T') bool, True = valid frame. At inference the masks hold each
        utterance's own frames (:meth:`own_lengths`): ESPnet slices the padded batch's mask,
        which gives a shorter utterance one or two extra frames whose convolution windows
        reach into the padding.
        """
        if masks is None:
            masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        else:
            masks = ~masks[:, None, :]
        if isinstance(self.embed, _SUBSAMPLING):
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
                own = self.own_lengths(ilens).to(masks.device)
                masks = masks & (torch.arange(masks.size(-1), device=masks.device) < own.unsqueeze(1)).unsqueeze(1)
        elif self.embed is not None:
            xs_pad = self.embed(xs_pad)
        return xs_pad, masks

    def own_lengths(self, ilens: torch.Tensor) -> torch.Tensor:
        """(B,) frames after the input layer of utterances of ``ilens`` input frames, each
        as if alone (the output length of the input layer's unpadded convolutions)."""
        own = ilens
        for stop, step in _MASK_SLICES.get(type(self.embed), ()):
            own = torch.div(own - stop - 1, step, rounding_mode="floor") + 1
        return own

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
        if self.static_mask is not None:
            if gates is not None:
                raise ValueError("this encoder has a static mask (an exported model): it takes no gates")
            plan = self._static_plan
        elif gates is not None and not self.training:
            plan = EncoderPlan(gates)
        # padded frames, zeroed before every convolution of a layer at inference (see _cgmlp_branch);
        # a single utterance has none
        pad = (~masks).transpose(1, 2) if plan is not None and masks.size(0) > 1 else None
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
                    use_reentrant=False,
                )
            else:
                xs = self._layer_training(layer, xs, masks, gates[:, layer_idx])
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
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        # at inference the input layer and the gate decision run in float32 also under autocast
        # (half-precision decoding): the gates are those of float32 decoding, and the residual
        # stream of the layers stays float32
        if not self.training and torch.is_autocast_enabled(xs_pad.device.type):
            xs_pad = xs_pad.float()  # features of a frontend that ran under autocast
        with nullcontext() if self.training else torch.autocast(xs_pad.device.type, enabled=False):
            xs, masks = self.embed_input(xs_pad, ilens, masks)
            if gates is None and self._gate_source is not None:
                gates = self._gate_source(xs, masks)
        return self.forward_layers(xs, masks, gates, ctc, max_layer, return_all_hs)

    @staticmethod
    def _layer_training(layer, xs, mask, g):
        """Every module computed and scaled by its gate. g: (B, 4)."""
        x, pos_emb = xs if isinstance(xs, tuple) else (xs, None)
        g = g[:, :, None, None].unbind(1)  # 4 x (B, 1, 1)
        if layer.feed_forward_macaron is not None:
            ffm = layer.feed_forward_macaron(layer.norm_ff_macaron(x))
            x = x + layer.ff_scale * g[FFM] * layer.dropout(ffm)
        x1 = g[ATTN] * _attn_branch(layer, x, pos_emb, mask)
        x2 = g[CGMLP] * _cgmlp_branch(layer, x, mask)
        merge_gate = g[ATTN] + g[CGMLP] - g[ATTN] * g[CGMLP]
        x = x + merge_gate * _merge(layer, x1, x2)
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
