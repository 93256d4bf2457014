"""Transformer decoder whose modules can be switched off per utterance.

Subclasses ESPnet's :class:`TransformerDecoder` (same constructor, same submodule names,
so dense checkpoints load). Gates are a (B, n_layers, 3) tensor over
:data:`~espnet_gated.method.layout.DECODER_MODULES`: multiplied in training; binary at inference,
where a closed module is not computed.

Every call takes its gates as an argument (``gates=``); without them the decoder is ESPnet's
dense one. ESPnet's beam search calls ``batch_score`` with one row per hypothesis and no room
for gates: :class:`espnet_gated.adapter.GatedDecoderScorer` binds one search's masks to the
decoder for it. The per-hypothesis state keeps ESPnet's contract: one (L-1, D) tensor per layer
holding that layer's outputs for the previous positions (a :class:`HypState`, a list that also
carries the self-attention keys/values of those positions).

Two caches make incremental decoding cheaper than ESPnet's decoder without changing its
results (both can be switched off, e.g. to measure the gating overhead alone):

* ``cache_src_kv``: cross-attention keys/values are projected once per utterance
  (:class:`MemoryKeysValues`) instead of at every step for every hypothesis; a layer
  whose ``src_attn`` is closed never projects them.
* ``cache_self_kv``: self-attention keys/values of the previous positions are kept in the
  hypothesis state; each step projects only the new position.

A decoder built with ``static_mask`` (an exported model, see ``espnet_gated.method.pruning``) has
its closed modules removed and always runs that mask.
"""

import inspect
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet_gated.compat import make_pad_mask, subsequent_mask
from espnet_gated.method.layout import DECODER_MODULES, parse_side
from espnet_gated.method.pruning import prune_decoder, refuse_gates
from espnet_gated.method.rows import ALL, Rows, add_on_rows, add_rows, build_plan, take

SELF, SRC, FF = range(len(DECODER_MODULES))
KV = Tuple[torch.Tensor, torch.Tensor]
#: ESPnet's own ``batch_score`` takes the encoder's padding mask (202611; utterance-batched search)
_STOCK_SCORE_TAKES_XS_MASK = "xs_mask" in inspect.signature(TransformerDecoder.batch_score).parameters


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


def _heads(attn, x: torch.Tensor, linear) -> torch.Tensor:
    """(n, L, D) -> (n, heads, L, d_k) through one of the attention's projections."""
    return linear(x).view(x.size(0), -1, attn.h, attn.d_k).transpose(1, 2)


def _self_attn_kv(layer, x, tgt_mask, cached: bool, past: Optional[KV]):
    """Self-attention that keeps the keys/values of all positions.

    x: (n, L, D) the layer input of the rows; past: their (k, v) of the first L-1
    positions (n, heads, L-1, d_k) or None (then all positions are projected). Returns
    (output of the computed positions, (k, v) of all L positions).
    """
    attn = layer.self_attn
    if cached and past is not None:
        h = layer.norm1(x[:, -1:, :])
        q = attn.q_norm(_heads(attn, h, attn.linear_q))
        k = torch.cat([past[0], attn.k_norm(_heads(attn, h, attn.linear_k))], dim=2)
        v = torch.cat([past[1], _heads(attn, h, attn.linear_v)], dim=2)
    else:
        h = layer.norm1(x)
        q = attn.q_norm(_heads(attn, h[:, -1:, :] if cached else h, attn.linear_q))
        k = attn.k_norm(_heads(attn, h, attn.linear_k))
        v = _heads(attn, h, attn.linear_v)
    mask = None if tgt_mask is None else (tgt_mask[:, -1:, :] if cached else tgt_mask)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
    return layer.dropout(attn.forward_attention(v, scores, mask)), (k, v)


def _src_attn_kv(layer, x, k, v, mask):
    """Cross-attention with precomputed keys/values.

    x: (n, Lq, D) rows that come in ``u = k.size(0)`` contiguous blocks of equal size, block
    ``j`` belonging to the memory ``j`` of ``k``/``v`` (u, heads, T, d_k); mask (u, 1, T) or
    None. The queries of a block are attended to their memory in one matrix product: the
    same computation as ``MultiHeadedAttention.forward`` minus the key/value projections.
    """
    attn = layer.src_attn
    n, lq, d = x.shape
    u = k.size(0)
    q = attn.linear_q(layer.norm2(x)).view(u, (n // u) * lq, attn.h, attn.d_k).transpose(1, 2)
    q = attn.q_norm(q)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
    return layer.dropout(attn.forward_attention(v, scores, mask).view(n, lq, d))


class MemoryKeysValues:
    """Cross-attention keys/values of ``U`` encoder outputs, projected once per layer on
    first use (a layer whose ``src_attn`` is closed for every utterance never projects them).

    ESPnet's decoder projects all encoder frames at every step and for every hypothesis;
    they depend only on the encoder output, so one projection per utterance suffices. The
    decoder's rows come in ``U`` contiguous blocks of equal size (the hypotheses of each
    utterance); a module kept by only some utterances uses the keys/values of those.

    Args:
        memory: (U, T, D) encoder outputs (padded), or (1, T, D) for one utterance.
        mask: (U, 1, T) valid frames, or None (all valid).
    """

    def __init__(self, memory: torch.Tensor, mask: Optional[torch.Tensor] = None):
        self.memory = memory
        self.mask = mask
        self._kv: Dict[Tuple[int, Optional[Tuple[int, ...]]], Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]
        self._kv = {}

    def __len__(self) -> int:
        return self.memory.size(0)

    def get(self, index: int, layer, utts: Optional[Sequence[int]] = None):
        """(k, v, mask) of layer ``index`` for the utterances ``utts`` (None = all)."""
        key = (index, None if utts is None else tuple(utts))
        if key not in self._kv:
            full = self._kv.get((index, None))
            if utts is None or full is None:
                memory, mask = self.memory, self.mask
                if utts is not None:
                    idx = torch.tensor(list(utts), device=memory.device)
                    memory = memory.index_select(0, idx)
                    mask = None if mask is None else mask.index_select(0, idx)
                attn = layer.src_attn
                k = attn.k_norm(_heads(attn, memory, attn.linear_k))
                self._kv[key] = (k, _heads(attn, memory, attn.linear_v), mask)
            else:
                idx = torch.tensor(list(utts), device=full[0].device)
                self._kv[key] = tuple(None if t is None else t.index_select(0, idx) for t in full)
        return self._kv[key]

    def select(self, utts: Sequence[int]) -> "MemoryKeysValues":
        """The same cache for a subset of the utterances (keys/values already projected
        are kept)."""
        idx = torch.tensor(list(utts), device=self.memory.device)
        out = MemoryKeysValues(
            self.memory.index_select(0, idx), None if self.mask is None else self.mask.index_select(0, idx)
        )
        for (index, sub), (k, v, _) in self._kv.items():
            if sub is None:
                out._kv[(index, None)] = (k.index_select(0, idx), v.index_select(0, idx), out.mask)
        return out


def _block_utts(rows: Rows, n_rows: int, n_utts: int) -> Optional[List[int]]:
    """Utterances whose row blocks ``rows`` selects (None = all)."""
    if rows is ALL or n_utts == 1:  # one memory: any rows may attend to it
        return None
    per = n_rows // n_utts
    utts = (rows.host[::per] // per).tolist()
    if n_rows % n_utts or len(rows) != len(utts) * per:
        raise ValueError(
            f"decoder rows must come in {n_utts} equal blocks, one per utterance of the cross-attention cache, "
            f"and a module is kept or closed for a whole block (got {n_rows} rows)"
        )
    return utts


class HypState(list):
    """One hypothesis' decoder state: ESPnet's list of per-layer outputs (L-1, D), plus in
    ``self_kv`` the self-attention keys/values (heads, L-1, d_k) of each layer (None where
    the layer's self-attention is closed, or when the cache is off)."""

    __slots__ = ("self_kv",)

    def __init__(self, layers, self_kv=None):
        super().__init__(layers)
        self.self_kv = self_kv


class GatedTransformerDecoder(TransformerDecoder):
    """ESPnet's Transformer decoder with per-utterance module gates (``gated_transformer``).

    Args (beyond TransformerDecoder's):
        static_mask: for exported models: the decoder part of a gate mask
            (``"111.101.011"``, layers separated by dots, bits in
            :data:`~espnet_gated.method.layout.DECODER_MODULES` order, see
            ``layout.format_mask``) or a (n_layers, 3) nested list. Closed modules are
            removed (no weights) and every call runs this mask.
    """

    def __init__(self, *args, static_mask: Union[str, Sequence[Sequence[int]], None] = None, **kwargs):
        super().__init__(*args, **kwargs)
        layer = self.decoders[0]
        if not layer.normalize_before or layer.concat_after:
            raise ValueError(
                "gated_transformer needs normalize_before: true and concat_after: false "
                "(the OWSM setting): a skipped module must leave the residual stream as is"
            )
        self.cache_src_kv = True
        self.cache_self_kv = True
        self.static_mask: Optional[torch.Tensor] = None
        self._static_plan = None
        if static_mask is not None:
            self.static_mask = parse_side("dec", static_mask, len(self.decoders))
            prune_decoder(self, self.static_mask)
            self._static_plan = build_plan(self.static_mask.unsqueeze(0))

    def present_modules(self) -> List[str]:
        return list(DECODER_MODULES)

    def cross_attention_cache(self, memory: torch.Tensor, mask: Optional[torch.Tensor] = None) -> MemoryKeysValues:
        """The cross-attention keys/values of ``memory`` (U, T, D) for the steps of one search (projected once
        per layer, on first use)."""
        return MemoryKeysValues(memory, mask)

    def _checked(self, gates: Optional[torch.Tensor], n_rows: int) -> Optional[torch.Tensor]:
        """``gates`` (n_layers, 3), (1, ...) or (n_rows, ...) as (rows, n_layers, 3)."""
        refuse_gates("decoder", self.static_mask, gates)
        if gates is None:
            return None
        if gates.dim() == 2:
            gates = gates.unsqueeze(0)
        if gates.size(0) not in (1, n_rows):
            raise ValueError(f"decoder gates are for {gates.size(0)} rows but the decoder got {n_rows}")
        return gates

    def _plan(self, gates: Optional[torch.Tensor], n_rows: int):
        """The row plan of ``gates``, else of the static mask, else None (dense)."""
        gates = self._checked(gates, n_rows)
        if gates is not None:
            return build_plan(gates)
        return self._static_plan

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
        """Teacher-forced forward; ``gates`` (B, n_layers, 3), else the static mask, else all
        open (ESPnet's dense decoder)."""
        gates = self._checked(gates, ys_in_pad.size(0))
        if gates is None and self.static_mask is None:
            return super().forward(hs_pad, hlens, ys_in_pad, ys_in_lens, return_hs, return_all_hs)
        tgt_mask = (~make_pad_mask(ys_in_lens)[:, None, :]).to(ys_in_pad.device)
        tgt_mask = tgt_mask & subsequent_mask(tgt_mask.size(-1), device=tgt_mask.device).unsqueeze(0)
        memory_mask = (~make_pad_mask(hlens, maxlen=hs_pad.size(1)))[:, None, :].to(hs_pad.device)
        x = self.embed(ys_in_pad)
        if gates is None:
            plan = self._static_plan
        else:
            plan = None if self.training else build_plan(gates)
        intermediate_outs = []
        for i, layer in enumerate(self.decoders):
            if plan is not None:
                x = self._layer_inference(layer, x, tgt_mask, hs_pad, memory_mask, plan[i])
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
        memory_kv: Optional[MemoryKeysValues] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """One incremental step; closed modules are skipped for the rows that close them.

        ``gates``: (rows or 1, n_layers, 3), else the static mask, else ESPnet's dense step;
        ``memory_kv``: precomputed cross-attention keys/values of ``memory``.
        """
        plan = self._plan(gates, tgt.size(0))
        if plan is None:
            return super().forward_one_step(tgt, tgt_mask, memory, memory_mask, cache=cache, return_hs=return_hs)
        y, new_cache, _ = self.step(tgt, tgt_mask, cache, None, plan, memory, memory_mask, memory_kv, return_hs)
        return y, new_cache

    def step(
        self,
        tgt: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        cache: Optional[List[torch.Tensor]],
        self_kv: Optional[List[Optional[KV]]],
        plan,
        memory: Optional[torch.Tensor] = None,
        memory_mask: Optional[torch.Tensor] = None,
        memory_kv: Optional[MemoryKeysValues] = None,
        return_hs: bool = False,
    ):
        """One incremental step with an explicit plan (``rows.build_plan``) and caches.

        cache: per layer (N, L-1, D) outputs of the previous positions, or None (all
        positions are computed); self_kv: per layer the self-attention (k, v) of those
        positions (None entries are recomputed). Cross-attention uses ``memory_kv`` (its
        ``U`` utterances own contiguous blocks of N/U rows) when given and
        ``cache_src_kv`` is on, else ``memory``/``memory_mask``.

        Returns (log-probabilities (N, V), new per-layer outputs (N, L, D), new per-layer
        self-attention (k, v) or None); with ``return_hs`` the first item is
        (log-probabilities, last hidden state) as in ESPnet.
        """
        x = self.embed(tgt)
        n_layers = len(self.decoders)
        if cache is None:
            cache = [None] * n_layers
        if self_kv is None:
            self_kv = [None] * n_layers
        use_src_kv = memory_kv is not None and self.cache_src_kv
        if memory_kv is None and memory is None:
            raise ValueError("decoder step needs the encoder output (memory) or its keys/values (memory_kv)")
        new_cache, new_kv = [], []
        for i, layer in enumerate(self.decoders):
            x, kv = self._layer_step(
                i,
                layer,
                x,
                tgt_mask,
                cache[i],
                self_kv[i],
                plan[i],
                memory,
                memory_mask,
                memory_kv if use_src_kv else None,
            )
            new_cache.append(x)
            new_kv.append(kv)
        y = hidden = self.after_norm(x[:, -1])
        if self.output_layer is not None:
            logits = self.output_layer(y)
            if logits.dtype in (torch.bfloat16, torch.float16):  # autocast: beam scores add up in float32
                logits = logits.float()
            y = torch.log_softmax(logits, dim=-1)
        return ((y, hidden) if return_hs else y), new_cache, (new_kv if self.cache_self_kv else None)

    def batch_score(
        self,
        ys: torch.Tensor,
        states: List,
        xs: torch.Tensor,
        return_hs: bool = False,
        xs_mask: Optional[torch.Tensor] = None,
        gates: Optional[torch.Tensor] = None,
        memory_kv: Optional[MemoryKeysValues] = None,
    ):
        """ESPnet's ``batch_score`` with gates and the self-attention cache.

        states: per hypothesis None (first step) or a list of per-layer (L-1, D) outputs
        (a :class:`HypState` from the previous call also carries the keys/values);
        xs_mask: (n, 1, T) valid encoder frames of ``xs`` (utterances of different lengths);
        gates: (n or 1, n_layers, 3); memory_kv: the cross-attention keys/values of ``xs``
        (see :class:`MemoryKeysValues`). Without gates (and no static mask) it is ESPnet's."""
        plan = self._plan(gates, ys.size(0))
        if plan is None:
            if xs_mask is None:
                return super().batch_score(ys, states, xs, return_hs=return_hs)
            if _STOCK_SCORE_TAKES_XS_MASK:
                return super().batch_score(ys, states, xs, return_hs=return_hs, xs_mask=xs_mask)
            plan = build_plan(torch.ones(1, len(self.decoders), len(DECODER_MODULES)))  # 202511: ours, all open
        n_batch, n_layers = len(ys), len(self.decoders)
        if states[0] is None:
            cache = self_kv = None
        else:
            cache = [torch.stack([states[b][i] for b in range(n_batch)]) for i in range(n_layers)]
            self_kv = None
            if self.cache_self_kv and all(getattr(s, "self_kv", None) is not None for s in states):
                self_kv = [
                    None
                    if states[0].self_kv[i] is None
                    else tuple(torch.stack([s.self_kv[i][j] for s in states]) for j in range(2))
                    for i in range(n_layers)
                ]
        tgt_mask = subsequent_mask(ys.size(-1), device=xs.device).unsqueeze(0)
        logp, new_cache, new_kv = self.step(ys, tgt_mask, cache, self_kv, plan, xs, xs_mask, memory_kv, return_hs)
        if new_kv is None:
            return logp, [HypState([new_cache[i][b] for i in range(n_layers)]) for b in range(n_batch)]
        return logp, [
            HypState(
                [new_cache[i][b] for i in range(n_layers)],
                [None if kv is None else (kv[0][b], kv[1][b]) for kv in new_kv],
            )
            for b in range(n_batch)
        ]

    def _layer_step(self, index, layer, x, tgt_mask, cache, past_kv, plan, memory, memory_mask, memory_kv):
        """One decoder layer of an incremental step; returns (layer output (N, L, D), self-attention
        (k, v) of all positions or None)."""
        self_rows, src_rows, ff_rows = plan
        n_rows = x.size(0)
        cached = cache is not None
        if cached:
            assert cache.shape == (n_rows, x.size(1) - 1, layer.size), (
                f"cache {tuple(cache.shape)} != {(n_rows, x.size(1) - 1, layer.size)}"
            )
        out = x[:, -1:, :] if cached else x
        kv = None
        if self_rows is not None:
            if self.cache_self_kv:
                past = take_kv(self_rows, past_kv)
                y, kv = _self_attn_kv(layer, take(self_rows, x), tgt_mask, cached, past)
                kv = scatter_kv(self_rows, kv, n_rows)
                out = add_rows(out, self_rows, y)
            else:
                out = add_on_rows(out, self_rows, lambda o, full, m: _self_attn(layer, full, m, cached), x, tgt_mask)
        if src_rows is not None:
            if memory_kv is not None:
                k, v, mm = memory_kv.get(index, layer, _block_utts(src_rows, n_rows, len(memory_kv)))
                out = add_on_rows(out, src_rows, lambda o: _src_attn_kv(layer, o, k, v, mm))
            else:
                out = add_on_rows(out, src_rows, lambda o, m, mm: _src_attn(layer, o, m, mm), memory, memory_mask)
        if ff_rows is not None:
            out = add_on_rows(out, ff_rows, lambda o: _feed_forward(layer, o))
        return (torch.cat([cache, out], dim=1) if cached else out), kv

    @staticmethod
    def _layer_training(layer, x, tgt_mask, memory, memory_mask, g):
        """Every module computed and scaled by its gate. g: (B, 3)."""
        g = g[:, :, None, None].unbind(1)
        x = x + g[SELF] * _self_attn(layer, x, tgt_mask, cached=False)
        x = x + g[SRC] * _src_attn(layer, x, memory, memory_mask)
        return x + g[FF] * _feed_forward(layer, x)

    @staticmethod
    def _layer_inference(layer, x, tgt_mask, memory, memory_mask, plan):
        """Closed modules are not computed (teacher-forced inference forward)."""
        self_rows, src_rows, ff_rows = plan
        out = add_on_rows(x, self_rows, lambda o, full, m: _self_attn(layer, full, m, False), x, tgt_mask)
        out = add_on_rows(out, src_rows, lambda o, mem, mm: _src_attn(layer, o, mem, mm), memory, memory_mask)
        return add_on_rows(out, ff_rows, lambda o: _feed_forward(layer, o))


def take_kv(rows: Rows, kv: Optional[KV]) -> Optional[KV]:
    if kv is None or rows is ALL:
        return kv
    return take(rows, kv[0]), take(rows, kv[1])


def scatter_kv(rows: Rows, kv: KV, n_rows: int) -> KV:
    """Keys/values of the selected rows placed in (n_rows, ...) tensors (zeros elsewhere:
    rows that close the module never read them)."""
    if rows is ALL:
        return kv
    idx = rows.on(kv[0].device)
    return tuple(t.new_zeros(n_rows, *t.shape[1:]).index_copy(0, idx, t) for t in kv)
