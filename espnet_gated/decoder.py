"""Transformer decoder whose modules can be switched off per utterance.

Subclasses ESPnet's :class:`TransformerDecoder` (same constructor, same submodule names,
so dense checkpoints load). Gates are a (B, n_layers, 3) tensor over
:data:`~espnet_gated.layout.DECODER_MODULES`: multiplied in training; binary at inference,
where a closed module is not computed.

Beam search (ESPnet's ``BatchBeamSearch``) calls :meth:`batch_score` with one row per
hypothesis and no room for extra arguments, so the mask of the utterance being decoded is
installed for the whole search with :meth:`GatedTransformerDecoder.installed_gates`.
The per-hypothesis state keeps ESPnet's contract: one (L-1, D) tensor per layer holding
that layer's outputs for the previous positions.
"""

import math
from contextlib import contextmanager
from typing import List, Optional, Tuple

import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet_gated.layout import DECODER_MODULES
from espnet_gated.rows import add_on_rows, build_plan

SELF, SRC, FF = range(len(DECODER_MODULES))


def _self_attn(layer, x, tgt_mask, cached: bool):
    """Self-attention of the last position (cached decoding) or of all positions."""
    h = layer.norm1(x)
    if cached:
        q = h[:, -1:, :]
        q_mask = None if tgt_mask is None else tgt_mask[:, -1:, :]
    else:
        q, q_mask = h, tgt_mask
    return layer.dropout(layer.self_attn(q, h, h, q_mask))


def _src_attn(layer, x, memory, memory_mask):
    return layer.dropout(layer.src_attn(layer.norm2(x), memory, memory, memory_mask))


def _feed_forward(layer, x):
    return layer.dropout(layer.feed_forward(layer.norm3(x)))


def _src_attn_cached(layer, x, key_value, memory_mask):
    """Cross-attention with precomputed keys/values (1 or B, heads, T, d_k): the same
    computation as ``MultiHeadedAttention.forward`` minus the K/V projections."""
    attn = layer.src_attn
    n = x.size(0)
    q = attn.linear_q(layer.norm2(x)).view(n, -1, attn.h, attn.d_k).transpose(1, 2)
    q = attn.q_norm(q)
    k, v = (t.expand(n, -1, -1, -1) for t in key_value)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
    return layer.dropout(attn.forward_attention(v, scores, memory_mask))


class MemoryKeysValues:
    """Cross-attention keys/values of one encoder output, computed once per layer on
    first use (a layer whose ``src_attn`` is closed never computes them).

    ESPnet's decoder projects all encoder frames at every step and for every hypothesis;
    these depend only on the encoder output, so one projection per utterance suffices.
    """

    def __init__(self, memory: torch.Tensor):
        self.memory = memory  # (1 or B, T, D)
        self._kv = {}

    def matches(self, memory: torch.Tensor) -> bool:
        """True if ``memory`` is this encoder output (possibly expanded over hypotheses)."""
        m = self.memory
        return (
            memory.data_ptr() == m.data_ptr()
            and memory.shape[1:] == m.shape[1:]
            and (memory.size(0) == m.size(0) or (m.size(0) == 1 and memory.stride(0) == 0))
        )

    def get(self, index: int, layer) -> Tuple[torch.Tensor, torch.Tensor]:
        if index not in self._kv:
            attn = layer.src_attn
            b = self.memory.size(0)
            k = attn.linear_k(self.memory).view(b, -1, attn.h, attn.d_k).transpose(1, 2)
            v = attn.linear_v(self.memory).view(b, -1, attn.h, attn.d_k).transpose(1, 2)
            self._kv[index] = (attn.k_norm(k), v)
        return self._kv[index]


class GatedTransformerDecoder(TransformerDecoder):
    """ESPnet's Transformer decoder with per-utterance module gates (``gated_transformer``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        layer = self.decoders[0]
        if not layer.normalize_before or layer.concat_after:
            raise ValueError(
                "gated_transformer needs normalize_before: true and concat_after: false "
                "(the OWSM setting): a skipped module must leave the residual stream as is"
            )
        self._installed = None  # gates installed by installed_gates()
        self._installed_plan = None  # their inference plan, built on first use
        self._memory_kv: Optional[MemoryKeysValues] = None  # set by init_state()

    def present_modules(self) -> List[str]:
        return list(DECODER_MODULES)

    @contextmanager
    def installed_gates(self, gates: Optional[torch.Tensor]):
        """Use ``gates`` for every call without explicit gates inside the block:
        (n_layers, 3), or (B, n_layers, 3) matching the rows the decoder will see
        (the batch in training, the hypotheses in ``batch_score``)."""
        previous = self._installed, self._installed_plan
        if gates is not None and gates.dim() == 2:
            gates = gates.unsqueeze(0)
        self._installed, self._installed_plan = gates, None
        try:
            yield
        finally:
            self._installed, self._installed_plan = previous

    def _gates_for(self, gates: Optional[torch.Tensor], n_batch: int) -> Optional[torch.Tensor]:
        gates = self._installed if gates is None else gates
        if gates is not None and gates.size(0) not in (1, n_batch):
            raise ValueError(f"decoder gates are for {gates.size(0)} rows but the decoder got {n_batch}")
        return gates

    def _plan_for(self, gates: Optional[torch.Tensor], n_batch: int):
        if gates is not None:
            return build_plan(self._gates_for(gates, n_batch))
        if self._installed is None:
            return None
        self._gates_for(None, n_batch)
        if self._installed_plan is None:
            self._installed_plan = build_plan(self._installed)
        return self._installed_plan

    def init_state(self, x: torch.Tensor):
        """ESPnet's beam search calls this once per utterance with its encoder output
        (T, D): the cross-attention keys/values of that output are cached for the search.
        The per-hypothesis state itself is ESPnet's (None at the start)."""
        self._memory_kv = MemoryKeysValues(x.unsqueeze(0))
        return None

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        return_hs: bool = False,
        return_all_hs: bool = False,
        gates: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced forward; ``gates`` (B, n_layers, 3), else the installed ones,
        else all open (the dense decoder)."""
        gates = self._gates_for(gates, ys_in_pad.size(0))
        if gates is None:
            return super().forward(hs_pad, hlens, ys_in_pad, ys_in_lens, return_hs, return_all_hs)
        tgt_mask = (~make_pad_mask(ys_in_lens)[:, None, :]).to(ys_in_pad.device)
        tgt_mask = tgt_mask & subsequent_mask(tgt_mask.size(-1), device=tgt_mask.device).unsqueeze(0)
        memory_mask = (~make_pad_mask(hlens, maxlen=hs_pad.size(1)))[:, None, :].to(hs_pad.device)
        x = self.embed(ys_in_pad)
        plan = None if self.training else build_plan(gates)
        intermediate_outs = []
        for i, layer in enumerate(self.decoders):
            if plan is not None:
                x = self._layer_inference(layer, x, tgt_mask, hs_pad, memory_mask, None, plan[i])
            elif i + 1 in self.gradient_checkpoint_layers:
                x = torch.utils.checkpoint.checkpoint(
                    self._layer_training,
                    layer,
                    x,
                    tgt_mask,
                    hs_pad,
                    memory_mask,
                    gates[:, i],
                    use_reentrant=False,
                )
            else:
                x = self._layer_training(layer, x, tgt_mask, hs_pad, memory_mask, gates[:, i])
            if return_all_hs:
                intermediate_outs.append(x)
        x = self.after_norm(x)
        hidden = x
        if self.output_layer is not None:
            x = self.output_layer(x)
        olens = tgt_mask.sum(1)
        if return_hs:
            return (x, hidden), olens
        if return_all_hs:
            return (x, intermediate_outs), olens
        return x, olens

    def forward_one_step(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor = None,
        *,
        cache: List[torch.Tensor] = None,
        return_hs: bool = False,
        gates: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """One incremental step; closed modules are skipped for the rows that close them."""
        plan = self._plan_for(gates, tgt.size(0))
        if plan is None:
            return super().forward_one_step(tgt, tgt_mask, memory, memory_mask, cache=cache, return_hs=return_hs)
        memory_kv = self._memory_kv if self._memory_kv is not None and self._memory_kv.matches(memory) else None
        x = self.embed(tgt)
        if cache is None:
            cache = [None] * len(self.decoders)
        new_cache = []
        for i, (layer, c, layer_plan) in enumerate(zip(self.decoders, cache, plan, strict=True)):
            kv = None if memory_kv is None or layer_plan[SRC] is None else memory_kv.get(i, layer)
            x = self._layer_inference(layer, x, tgt_mask, memory, memory_mask, c, layer_plan, kv)
            new_cache.append(x)
        y = self.after_norm(x[:, -1])
        hidden = y
        if self.output_layer is not None:
            y = torch.log_softmax(self.output_layer(y), dim=-1)
        if return_hs:
            return (y, hidden), new_cache
        return y, new_cache

    @staticmethod
    def _layer_training(layer, x, tgt_mask, memory, memory_mask, g):
        """Every module computed and scaled by its gate. g: (B, 3)."""
        g = g[:, :, None, None].unbind(1)
        x = x + g[SELF] * _self_attn(layer, x, tgt_mask, cached=False)
        x = x + g[SRC] * _src_attn(layer, x, memory, memory_mask)
        return x + g[FF] * _feed_forward(layer, x)

    @staticmethod
    def _layer_inference(layer, x, tgt_mask, memory, memory_mask, cache, plan, memory_kv=None):
        """Closed modules are not computed. With ``cache`` (B, L-1, D) only the last
        position is computed and appended, as in ESPnet's ``DecoderLayer``; with
        ``memory_kv`` cross-attention uses those precomputed keys/values."""
        self_rows, src_rows, ff_rows = plan
        cached = cache is not None
        if cached:
            assert cache.shape == (x.size(0), x.size(1) - 1, layer.size), (
                f"cache {tuple(cache.shape)} != {(x.size(0), x.size(1) - 1, layer.size)}"
            )
            out = x[:, -1:, :]
        else:
            out = x
        # self-attention reads the whole prefix, so it gets the full x as an extra row arg
        out = add_on_rows(out, self_rows, lambda o, full, m: _self_attn(layer, full, m, cached), x, tgt_mask)
        if memory_kv is None:
            out = add_on_rows(out, src_rows, lambda o, mem, mm: _src_attn(layer, o, mem, mm), memory, memory_mask)
        else:
            out = add_on_rows(out, src_rows, lambda o, mm: _src_attn_cached(layer, o, memory_kv, mm), memory_mask)
        out = add_on_rows(out, ff_rows, lambda o: _feed_forward(layer, o))
        return torch.cat([cache, out], dim=1) if cached else out
