#!/usr/bin/env python3
r"""Benchmark: does skipped compute become real time? Dense ESPnet vs gated decoding.

Usage:
    # throughput on a whole test set: utterances/s and real-time factor, batches of 1 and 16
    python -m espnet_gated.bin.bench --throughput --s2t_train_config exp/s2t_train/config.yaml \
        --s2t_model_file exp/s2t_train/valid.acc.ave.pth --wav_scp dump/raw/test_deu_asr/wav.scp \
        --lang_sym deu --task_sym asr --batch "1 16" --threads 1

    # the same on OWSM v3.1 base-sized random weights (32 synthetic utterances of 2.5-7.5 s)
    python -m espnet_gated.bin.bench --throughput --size base --utt_sec 5 --batch "1 16" --threads 1

    # OWSM v3.1 base-sized random weights on CPU, beams 5 and 10, with and without CTC
    python -m espnet_gated.bin.bench --size base --beam "5 10" --ctc_weight "0 0.3" \
        --n_utts 3 --utt_sec 5 --decode_len 30 --threads 1 --out /tmp/bench_base

    # quick smoke run
    python -m espnet_gated.bin.bench --size tiny --n_utts 2 --beam 3 --ctc_weight 0 --out /tmp/bench_tiny

    # a trained gated model on real audio (adds the learned-mask variant)
    python -m espnet_gated.bin.bench --s2t_train_config exp/s2t/config.yaml \
        --s2t_model_file exp/s2t/valid.acc.ave.pth --wav_scp dump/raw/test_deu_asr/wav.scp \
        --lang_sym deu --task_sym asr --decode_len 0 --out exp/s2t/bench

    # gated variants decode 4 utterances at once (ESPnet's dense decoding stays one at a time)
    python -m espnet_gated.bin.bench --size base --batch 4 --n_utts 8 --out /tmp/bench_batch

Two modes. ``--throughput`` decodes a whole set (``--wav_scp``, or ``--n_utts`` synthetic
utterances whose lengths spread over 0.5-1.5 x ``--utt_sec``) once per variant and repeat,
the variants interleaved: ESPnet's dense ``Speech2Text`` one utterance at a time (its only
mode), and per ``--batch`` size the gated model with every gate open, its predicted (learned)
masks and 50% decoder sparsity (``dec@0.5``), each sorted by length and decoded ``--batch``
at a time (encoder and beam search batched), and for ``--batch`` > 1 the first two again with
ESPnet's own search (``+espnet_search``: 202611's utterance-batched ``BatchBeamSearch``, the
gated decoder running each utterance's mask; on 202511 one utterance at a time); per
``--ctc_weight`` (default 0 and 0.5) it reports utterances per second, the real-time factor,
the speed-up over dense, the share of time in CTC prefix scoring (ours only) and how many
hypotheses equal the dense model's. Without it, the
latency mode below times each utterance.

One set of weights is built (``--size``, random init) or loaded (a trained gated model);
ESPnet's dense model (stock ``e_branchformer`` + ``transformer``, same dimensions, same
weights) is decoded with ESPnet's own ``Speech2Text``/``BatchBeamSearch``. On the same
utterances, in one run, the variants are decoded round-robin per utterance (after a
warm-up, starting with a different variant each utterance):

* ``dense``: ESPnet's model and decoding;
* ``all_open``: the gated model with every gate open;
* ``all_open_nocache``: the same with our decoder caches off (cross- and self-attention
  keys/values recomputed every step as ESPnet does): the same arithmetic as ``dense``, so
  its time against ``dense`` is the overhead of the gated code itself;
* ``predicted`` (random weights: the untrained predictor keeps every gate open, so this
  times the gate predictor) or ``learned`` (a trained model: its masks);
* ``<side>@<s>``: forced masks closing a fraction ``s`` of the gated modules of the
  encoder, the decoder or both. Which modules: layer ``l`` closes module types
  ``(l + r) mod n_types`` for rounds ``r = 0, 1, ...`` until ``round(s * n_modules)``
  are closed, i.e. closures spread evenly over layers and module types (encoder types
  ffn_macaron, attn, cgmlp, ffn; decoder self_attn, src_attn, ffn);
* ``exported``: ``espnet_gated.bin.export`` of one mask (``--export_mask``; by default
  ``both@0.5``, or the context-only predictor's mask of a trained model), closed modules'
  weights and the predictor removed.

Fixed decode length: random decoders emit ``<eos>`` at once or never, so by default
(``--decode_len N``) the ``<eos>`` logit is set to -inf by a forward hook on every
model's ``decoder.output_layer`` and the search runs with ``maxlenratio = -N``: every
variant runs exactly N decoder steps with a full beam, and ESPnet's search appends
``<eos>`` after the last. ``--decode_len 0`` decodes naturally (``--maxlenratio``).

Reported per variant (median over utterances): encoder time (feature extraction, gate
predictor, encoder), decoder time (beam search) and their sum per utterance; speed-up vs
dense; analytic MACs of what was executed (``espnet_gated.method.flops``: input layer, encoder
layers, CTC projection when ``ctc_weight > 0``, gate predictor, and the beam search as it
ran - rows and prefix length of every decoder call); the FLOPs-ideal speed-up (dense
MACs / executed MACs) and realized/ideal; the same against ``all_open`` (the gating's own
effect, with the decoder caches in both). CTC prefix scoring (a Python loop over frames
per token) is not in the MACs and is not removed by gates: compare ``--ctc_weight``
values separately. Outputs under ``--out`` (default ``exp/bench/<mode>_<size or model>_<time>``):
bench.md (also printed), bench.json, bench.png, models/. ``--device cuda`` times a GPU
(synchronised around each timed decode); ``--dtype bfloat16`` decodes the gated variants in
half precision (``espnet_gated.decoding.inference``).
"""

import argparse
import io
import json
import logging
import math
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from espnet2.bin.s2t_inference import Speech2Text

from espnet_gated.adapter import use_prompt_ctc
from espnet_gated.bin.export import build_from_config, export, load_config, save_model_dir
from espnet_gated.cli import UsageError, entry_point
from espnet_gated.configs import dense_config
from espnet_gated.data.tokenizer import HEAD_SYMBOLS, TAIL_SYMBOLS, TIME_SYMBOLS
from espnet_gated.decoding.inference import DTYPES, GatedSpeech2Text, check_weights
from espnet_gated.method.flops import ctc_macs, encoder_macs, input_layer_macs, search_macs, weight_macs
from espnet_gated.method.layout import DECODER_MODULES, ENCODER_MODULES, format_mask, parse_mask
from espnet_gated.plugin.tasks import preprocessor_defaults
from espnet_gated.plugin.weights import GATING_STATE, read_state_dict
from espnet_gated.utils import atomic_output, atomic_write

logger = logging.getLogger("espnet_gated.bench")

#: backbone sizes: OWSM v3.1 base, small and medium (paper table), and a tiny one for smoke tests
SIZES = {
    "tiny": dict(d=64, layers=2, heads=2, ffn=128, vocab=200),
    "base": dict(d=384, layers=6, heads=6, ffn=1536, vocab=50000),
    "small": dict(d=768, layers=9, heads=12, ffn=3072, vocab=50000),
    "medium": dict(d=1024, layers=18, heads=16, ffn=4096, vocab=50000),
}
LANGS = ("eng", "deu", "fra", "ita")
TASKS = ("asr", "st_eng")


# ---------------------------------------------------------------------------- model setup
def random_config(size: str, vocab_size: int, utt_sec: Optional[float]) -> Dict:
    """An OWSM v3.1-style gated config (E-Branchformer + Transformer) of the given size; input
    padded to ``utt_sec`` (as OWSM pads to 30 s), or not at all (None)."""
    s = SIZES[size]
    n_special = len(HEAD_SYMBOLS) + 1 + len(LANGS) + len(TASKS) + 1 + len(TIME_SYMBOLS) + len(TAIL_SYMBOLS)
    if vocab_size < n_special + 1:
        raise ValueError(f"--vocab_size must be at least {n_special + 1}")
    prefix = ["<na>", *[f"<{lang}>" for lang in LANGS], *[f"<{task}>" for task in TASKS], "<notimestamps>"]
    pieces = [f"\u2581w{i}" for i in range(vocab_size - n_special)]
    token_list = [*HEAD_SYMBOLS, *prefix, *TIME_SYMBOLS, *pieces, *TAIL_SYMBOLS]
    return dict(
        token_list=token_list,
        token_type="bpe",
        bpemodel=None,
        input_size=None,
        frontend="default",
        frontend_conf=dict(n_fft=512, win_length=400, hop_length=160, n_mels=80),
        specaug=None,
        normalize="utterance_mvn",
        normalize_conf={},
        encoder="gated_e_branchformer",
        encoder_conf=dict(
            output_size=s["d"],
            attention_heads=s["heads"],
            attention_layer_type="selfattn",
            pos_enc_layer_type="abs_pos",
            rel_pos_type="latest",
            cgmlp_linear_units=s["ffn"],
            cgmlp_conv_kernel=31,
            use_linear_after_conv=False,
            gate_activation="identity",
            num_blocks=s["layers"],
            dropout_rate=0.0,
            positional_dropout_rate=0.0,
            attention_dropout_rate=0.0,
            input_layer="conv2d",
            layer_drop_rate=0.0,
            linear_units=s["ffn"],
            positionwise_layer_type="linear",
            use_ffn=True,
            macaron_ffn=True,
            merge_conv_kernel=31,
        ),
        decoder="gated_transformer",
        decoder_conf=dict(
            attention_heads=s["heads"],
            linear_units=s["ffn"],
            num_blocks=s["layers"],
            dropout_rate=0.0,
            positional_dropout_rate=0.0,
            self_attention_dropout_rate=0.0,
            src_attention_dropout_rate=0.0,
        ),
        model="gated_espnet",
        model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, sym_na="<na>", gate_conf=dict(hidden_size=256, context_dim=64)),
        ctc_conf={},
        preprocessor="s2t",
        preprocessor_conf={**preprocessor_defaults(), "speech_length": utt_sec, "time_apply_prob": 1.0},
        init=None,
    )


def prepare_models(args, out: Path) -> Dict:
    """Write (or locate) the gated and dense model directories; returns their paths and config."""
    models = out / "models"
    if args.s2t_train_config:
        config = load_config(args.s2t_train_config)
        if config.get("model") != "gated_espnet":
            raise ValueError(f"{args.s2t_train_config}: --s2t_train_config must be a gated model (model: gated_espnet)")
        if not args.s2t_model_file or not Path(args.s2t_model_file).is_file():
            raise FileNotFoundError(f"--s2t_model_file not found: {args.s2t_model_file}")
        gated = build_from_config(config)
        check_weights(gated, args.s2t_model_file, args.s2t_train_config)  # loads them
        gated_paths = (Path(args.s2t_train_config), Path(args.s2t_model_file))
        trained = True
    else:
        vocab = args.vocab_size or SIZES[args.size]["vocab"]
        logger.info(f"building a random {args.size}-sized gated model (vocabulary {vocab})")
        config = random_config(args.size, vocab, None if args.throughput else args.utt_sec)
        torch.manual_seed(args.seed)
        gated = build_from_config(config)
        gated_paths = save_model_dir(models / "gated", config, gated.state_dict())
        trained = False
    state = {k: v for k, v in gated.state_dict().items() if not k.startswith(GATING_STATE)}
    dconf = dense_config(config)
    dense = build_from_config(dconf)
    result = dense.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"dense model keys differ from the gated model's: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    dense_paths = save_model_dir(models / "dense", dconf, dense.state_dict())
    logger.info(f"dense ESPnet model with the same weights: {dense_paths[0]}")
    return dict(config=config, gated=gated_paths, dense=dense_paths, trained=trained, gated_model=gated)


def spread_mask(n_layers: int, n_types: int, sparsity: float) -> torch.Tensor:
    """Binary keep mask closing round(sparsity * n) modules spread over layers and types
    (layer l closes types (l + r) mod n_types for rounds r = 0, 1, ...)."""
    n_close = int(math.floor(sparsity * n_layers * n_types + 0.5))
    mask = torch.ones(n_layers, n_types)
    order = [(layer, (layer + r) % n_types) for r in range(n_types) for layer in range(n_layers)]
    for layer, t in order[:n_close]:
        mask[layer, t] = 0
    return mask


# ---------------------------------------------------------------------------- variants
@dataclass
class Variant:
    name: str
    kind: str  # dense | gated | exported
    side: str = "-"
    sparsity: float = 0.0
    enc_mask: Optional[torch.Tensor] = None  # forced keep masks (None: predicted / none)
    dec_mask: Optional[torch.Tensor] = None
    cache: bool = True
    predictor: bool = False
    batch: int = 1  # throughput mode: utterances decoded together
    search: str = "ours"  # throughput mode: the multi-utterance search (ours or ESPnet's, see inference.SEARCHES)
    records: List[Dict] = field(default_factory=list)

    def masks(self):
        """The (enc, dec) masks a gated variant decodes with instead of the predicted ones, or None."""
        return (self.enc_mask, self.dec_mask) if self.kind == "gated" and self.enc_mask is not None else None


def make_variants(args, n_enc: int, n_dec: int, trained: bool, export_masks) -> List[Variant]:
    ones_e, ones_d = torch.ones(n_enc, len(ENCODER_MODULES)), torch.ones(n_dec, len(DECODER_MODULES))
    variants = [
        Variant("dense", "dense"),
        Variant("all_open", "gated", enc_mask=ones_e, dec_mask=ones_d),
        Variant("all_open_nocache", "gated", enc_mask=ones_e, dec_mask=ones_d, cache=False),
        Variant("learned" if trained else "predicted", "gated", side="pred", predictor=True),
    ]
    for side in args.sides:
        for s in args.sparsities:
            enc = spread_mask(n_enc, len(ENCODER_MODULES), s) if side in ("enc", "both") else ones_e
            dec = spread_mask(n_dec, len(DECODER_MODULES), s) if side in ("dec", "both") else ones_d
            variants.append(Variant(f"{side}@{s:g}", "gated", side=side, sparsity=s, enc_mask=enc, dec_mask=dec))
    if export_masks is not None:
        if not any(v.enc_mask is not None and _same_mask(v, export_masks) for v in variants if v.kind == "gated"):
            variants.append(
                Variant("export_ref", "gated", side="export", enc_mask=export_masks[0], dec_mask=export_masks[1])
            )
        variants.append(
            Variant("exported", "exported", side="export", enc_mask=export_masks[0], dec_mask=export_masks[1])
        )
    return variants


def _same_mask(v: Variant, masks) -> bool:
    return torch.equal(v.enc_mask, masks[0]) and torch.equal(v.dec_mask, masks[1])


# ---------------------------------------------------------------------------- decoding
class TimedSpeech2Text(Speech2Text):
    """ESPnet's Speech2Text, with the beam search's time kept in ``decoder_s``, the time of its
    CTC prefix scorer added up in ``ctc_s``, and CTC scoring as the gated model's
    (``use_prompt_ctc``)."""

    decoder_s = 0.0
    ctc_s = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_prompt_ctc(self.beam_search)
        ctc = self.beam_search.part_scorers.get("ctc")
        if ctc is not None:  # what ESPnet's BatchBeamSearch calls of its CTC scorer
            for name in ("batch_init_state", "batch_score_partial", "select_state"):
                setattr(ctc, name, self._timed(getattr(ctc, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.ctc_s += time.perf_counter() - start

        return timed

    def _decode_single_sample(self, enc):
        start = time.perf_counter()
        try:
            return super()._decode_single_sample(enc)
        finally:
            self.decoder_s = time.perf_counter() - start


class Probe:
    """Records what a model executed: encoder input/output frames and decoder calls."""

    def __init__(self, model):
        self.frames: List[tuple] = []
        self.steps: List[tuple] = []

        def enc_hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            out = out[0] if isinstance(out, tuple) else out
            self.frames.append((int(args[0].size(1)), int(out.size(1)), int(args[0].size(0))))

        def embed_hook(module, args):
            self.steps.append((int(args[0].size(0)), int(args[0].size(1))))

        self.handles = [
            model.encoder.register_forward_hook(enc_hook),
            model.decoder.embed.register_forward_pre_hook(embed_hook),
        ]

    def reset(self):
        self.frames, self.steps = [], []


def suppress_eos(model) -> None:
    """Forward hook: the <eos> logit is -inf, so decoding runs to the maximum length."""
    eos = model.eos

    def hook(module, args, output):
        output[..., eos] = float("-inf")
        return output

    model.decoder.output_layer.register_forward_hook(hook)


@contextmanager
def natural_length(s2t, speech, enabled: bool):
    """ESPnet's Speech2Text pads to ``speech_length``; for configs with ``speech_length: null``
    set it to the utterance's own length for the call."""
    if not enabled or getattr(s2t, "natural_length", False):
        yield
        return
    conf = s2t.preprocessor_conf
    s2t.preprocessor_conf = {**conf, "speech_length": (len(speech) + 0.5) / conf["fs"]}
    try:
        yield
    finally:
        s2t.preprocessor_conf = conf


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Runner:
    """Decodes utterances with one variant and records times, hypotheses and what ran."""

    def __init__(self, args, s2ts: Dict[str, Speech2Text], probes: Dict[str, Probe], natural: bool):
        self.args, self.s2ts, self.probes, self.natural = args, s2ts, probes, natural

    @contextmanager
    def _setup(self, v: Variant):
        s2t = self.s2ts[v.kind]
        decoder = s2t.s2t_model.decoder
        flags = (getattr(decoder, "cache_src_kv", None), getattr(decoder, "cache_self_kv", None))
        if v.kind != "dense":
            decoder.cache_src_kv = decoder.cache_self_kv = v.cache
        try:
            yield s2t
        finally:
            if v.kind != "dense":
                decoder.cache_src_kv, decoder.cache_self_kv = flags

    def run(self, v: Variant, speeches: Sequence[np.ndarray], first: int = 0, record: bool = True) -> None:
        """Decode ``speeches`` (utterances ``first``, ``first + 1``, ...) with variant ``v``."""
        args = self.args
        probe = self.probes[v.kind]
        with self._setup(v) as s2t:
            if args.batch > 1 and v.kind != "dense":
                probe.reset()
                sync(args.device)
                start = time.perf_counter()
                decoding = s2t.decode_batch(list(speeches), masks=v.masks())
                sync(args.device)
                total = time.perf_counter() - start
                n = len(speeches)
                timing = decoding.timing
                # decode_batch encodes the utterances longest first, in padded batches: each utterance
                # gets the (padded) frames of its batch
                order = sorted(range(n), key=lambda i: -s2t._prepare(speeches[i]).numel())
                batch_of = [call for call in probe.frames for _ in range(call[2])]
                frames_of = {i: batch_of[k] for k, i in enumerate(order)}
                for j in range(n):
                    frames = frames_of[j]
                    steps = [(per, length) for length, utts, per in decoding.search_log if j in utts]
                    rec = dict(
                        total_s=total / n,
                        enc_s=timing["encoder_s"] / n,
                        dec_s=timing["decoder_s"] / n,
                        gates_s=timing["gates_s"] / n,
                        feat_frames=frames[0],
                        frames=frames[1],
                        steps=steps,
                        yseq=decoding.nbests[j][0][4].yseq.tolist() if decoding.nbests[j] else [],
                        mask=format_mask(*decoding.masks[j]),
                        utt=first + j,
                    )
                    if record:
                        v.records.append(rec)
                return
            for j, speech in enumerate(speeches):
                probe.reset()
                with natural_length(s2t, speech, self.natural):
                    sync(args.device)
                    start = time.perf_counter()
                    if v.kind == "dense":
                        results = s2t(speech)
                    else:
                        decoding = s2t.decode(speech, masks=v.masks())
                        results = decoding.nbests[0]
                    sync(args.device)
                    total = time.perf_counter() - start
                if v.kind == "dense":
                    dec_s, gates_s, mask = s2t.decoder_s, 0.0, None
                else:
                    dec_s, gates_s, mask = decoding.timing["decoder_s"], decoding.timing["gates_s"], decoding.masks[0]
                rec = dict(
                    total_s=total,
                    enc_s=total - dec_s,
                    dec_s=dec_s,
                    gates_s=gates_s,
                    feat_frames=probe.frames[0][0],
                    frames=probe.frames[0][1],
                    steps=list(probe.steps),
                    yseq=results[0][4].yseq.tolist() if results else [],
                    mask=None if mask is None else format_mask(*mask),
                    utt=first + j,
                )
                if record:
                    v.records.append(rec)


# ---------------------------------------------------------------------------- accounting
def record_macs(rec: Dict, v: Variant, model, ctc_weight: float, n_mels: int) -> Dict[str, float]:
    """Analytic MACs of one decoded utterance (see the module docstring)."""
    enc_mask = dec_mask = None
    if rec["mask"] is not None:
        parsed = parse_mask(rec["mask"])
        enc_mask, dec_mask = torch.tensor(parsed["enc"]), torch.tensor(parsed["dec"])
    frames = rec["frames"]
    enc = input_layer_macs(model.encoder, rec["feat_frames"], n_mels) + encoder_macs(model.encoder, frames, enc_mask)
    if ctc_weight > 0:
        enc += ctc_macs(model.ctc, frames)
    if v.predictor:
        enc += weight_macs(model.gate_predictor)
    cache = v.cache and v.kind != "dense"  # ESPnet's decoder caches neither keys nor values
    dec = search_macs(model.decoder, frames, rec["steps"], dec_mask, cache_src_kv=cache, cache_self_kv=cache)
    return {"enc": enc, "dec": dec, "total": enc + dec}


def _ratio(a: float, b: float) -> Optional[float]:
    return None if not b else a / b


def summarize(
    variants: List[Variant], model, ctc_weight: float, n_mels: int, n_gated: Dict[str, int], stat_name: str = "median"
) -> List[Dict]:
    """Per-variant summary; times: ``stat_name`` (median or mean) over utterances of each
    utterance's fastest repeat."""
    stat = statistics.median if stat_name == "median" else statistics.fmean
    rows = []
    for v in variants:
        best = {}  # fastest repeat of each utterance: contention on a shared machine only adds time
        for r in v.records:
            if r["utt"] not in best or r["total_s"] < best[r["utt"]]["total_s"]:
                best[r["utt"]] = r
        v.records = [best[u] for u in sorted(best)]
        macs = [record_macs(r, v, model, ctc_weight, n_mels) for r in v.records]
        closed = {"enc": 0.0, "dec": 0.0}
        if v.records and v.records[0]["mask"] is not None:
            for r in v.records:
                m = parse_mask(r["mask"])
                for side in ("enc", "dec"):
                    closed[side] += sum(row.count(0) for row in m[side]) / len(v.records)
        row = dict(
            variant=v.name,
            kind=v.kind,
            side=v.side,
            target_sparsity=v.sparsity,
            sparsity={side: closed[side] / n_gated[side] if n_gated[side] else 0.0 for side in closed},
            closed_modules=closed,
            n_utts=len(v.records),
            ms={part: 1000 * stat(r[f"{part}_s"] for r in v.records) for part in ("enc", "dec", "total", "gates")},
            ms_min={part: 1000 * min(r[f"{part}_s"] for r in v.records) for part in ("enc", "dec", "total")},
            ms_mean={
                part: 1000 * statistics.fmean(r[f"{part}_s"] for r in v.records) for part in ("enc", "dec", "total")
            },
            macs={part: statistics.fmean(m[part] for m in macs) for part in ("enc", "dec", "total")},
            utterances=[
                {k: r[k] for k in ("total_s", "enc_s", "dec_s", "gates_s", "feat_frames", "frames", "mask", "steps")}
                for r in v.records
            ],
            decode_steps=statistics.fmean(len(r["steps"]) for r in v.records),
        )
        rows.append(row)
    by_name = {r["variant"]: r for r in rows}
    refs = {"dense": by_name["dense"], "all_open": by_name.get("all_open")}
    dense_hyps = [r["yseq"] for r in variants[0].records]
    for v, row in zip(variants, rows, strict=True):
        for ref_name, ref in refs.items():
            if ref is None:
                continue
            speed = {p: _ratio(ref["ms"][p], row["ms"][p]) for p in ("enc", "dec", "total")}
            ideal = {p: _ratio(ref["macs"][p], row["macs"][p]) for p in ("enc", "dec", "total")}
            real_ideal = {p: None if speed[p] is None or not ideal[p] else speed[p] / ideal[p] for p in speed}
            suffix = "" if ref_name == "dense" else "_vs_all_open"
            row["speedup" + suffix], row["ideal" + suffix], row["realized_over_ideal" + suffix] = (
                speed,
                ideal,
                real_ideal,
            )
        row["same_hyps_as_dense"] = [r["yseq"] for r in v.records] == dense_hyps
        row["gate_predictor_share"] = row["ms"]["gates"] / row["ms"]["total"] if row["ms"]["total"] else 0.0
    return rows


# ---------------------------------------------------------------------------- reporting
def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _triple(d: Dict) -> str:
    return "/".join(_f(d.get(p)) for p in ("enc", "dec", "total"))


def markdown(report: Dict) -> str:
    m = report["meta"]
    lines = [
        "# espnet_gated benchmark",
        "",
        f"{m['model']}; {m['device']} ({m['threads']} threads), torch {m['torch']}, "
        f"{m['n_utts']} utterances of {m['utt_desc']}, {m['length_desc']}, batch {m['batch']}.",
        f"Times: {m['stat']} over utterances of each utterance's fastest of {m['repeats']} interleaved repeats;",
        "speed-up = dense time / variant time; ideal = dense MACs / executed MACs;",
        "r/i = realized / ideal; triples are enc/dec/total. `vs all_open`: the gating's own effect (same decoder",
        "caches on both sides). `dense` is ESPnet's model and decoding (no key/value caches); `all_open_nocache` does",
        "the same arithmetic as `dense` through the gated code (its slowdown vs dense is the gating overhead).",
        "",
    ]
    for run in report["runs"]:
        lines += [
            f"## beam {run['beam']}, ctc_weight {run['ctc_weight']}",
            "",
            "| variant | closed enc/dec | enc ms | dec ms | total ms | GMACs | speed-up | ideal | r/i "
            "| vs all_open: speed-up | ideal | r/i | hyps = dense |",
            "|---|---|---:|---:|---:|---:|---|---|---|---|---|---|---|",
        ]
        for r in run["variants"]:
            c = r["closed_modules"]
            lines.append(
                f"| {r['variant']} | {c['enc']:.0f}/{c['dec']:.0f} | {r['ms']['enc']:.0f} | {r['ms']['dec']:.0f} "
                f"| {r['ms']['total']:.0f} | {r['macs']['total'] / 1e9:.2f} | {_triple(r['speedup'])} "
                f"| {_triple(r['ideal'])} | {_triple(r['realized_over_ideal'])} "
                f"| {_triple(r.get('speedup_vs_all_open', {}))} | {_triple(r.get('ideal_vs_all_open', {}))} "
                f"| {_triple(r.get('realized_over_ideal_vs_all_open', {}))} "
                f"| {'yes' if r['same_hyps_as_dense'] else 'no'} |"
            )
        lines.append("")
        t = run["targets"]
        overhead = f"{_f(t.get('overhead_pct'), '{:+.1f}')}% (target <= +3%)"
        if m["batch"] > 1:
            overhead += " - not comparable: the gated variants decode batches, dense one utterance at a time"
        lines += [
            "Targets:",
            "",
            f"- gated code overhead (all_open_nocache vs dense, total): {overhead}",
            f"- decoding at 50% decoder sparsity vs dense: {_f(t.get('dec50_speedup'))}x (target >= 1.5x)",
            f"- realized/ideal, decoder-only (dec part): vs dense {_f(t.get('dec_ri_dense'))}, "
            f"vs all_open {_f(t.get('dec_ri_open'))} (target >= 0.85)",
            f"- realized/ideal, encoder-only (enc part): vs dense {_f(t.get('enc_ri_dense'))}, "
            f"vs all_open {_f(t.get('enc_ri_open'))} (target >= 0.85)",
            f"- gate predictor share of decode time: {_f(t.get('predictor_pct'), '{:.2f}')}% (target < 1%)",
            "",
        ]
    if report.get("export"):
        e = report["export"]
        lines += [
            "## exported model",
            "",
            f"mask `{e['mask']}`: {e['params']['exported']:,} parameters (gated {e['params']['gated']:,}, dense "
            f"{e['params']['dense']:,}); model file {e['bytes']['exported_model_file']:,} bytes (gated "
            f"{e['bytes']['gated_model_file']:,}, dense {e['bytes']['dense_model_file']:,}); "
            f"same hypotheses as the gated model with that mask: {e.get('same_hyps_as_gated')}.",
            "",
        ]
    return "\n".join(lines)


def targets(rows: List[Dict], sparsities: Sequence[float]) -> Dict:
    by = {r["variant"]: r for r in rows}
    out = {}
    if "all_open_nocache" in by:
        out["overhead_pct"] = 100 * (by["all_open_nocache"]["ms"]["total"] / by["dense"]["ms"]["total"] - 1)
    dec50 = by.get("dec@0.5")
    if dec50:
        out["dec50_speedup"] = dec50["speedup"]["total"]
    for side in ("dec", "enc"):
        vals_d = [r["realized_over_ideal"][side] for r in rows if r["side"] == side]
        vals_o = [r["realized_over_ideal_vs_all_open"][side] for r in rows if r["side"] == side]
        if vals_d:
            out[f"{side}_ri_dense"] = statistics.fmean(v for v in vals_d if v is not None)
            out[f"{side}_ri_open"] = statistics.fmean(v for v in vals_o if v is not None)
    pred = [r for r in rows if r["side"] == "pred"]
    if pred:
        out["predictor_pct"] = 100 * pred[0]["gate_predictor_share"]
    return out


def plot(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 3.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        rows = [r for r in run["variants"] if r["variant"] != "dense"]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["speedup"]["total"] for r in rows], 0.4, label="realized speed-up vs dense")
        ax.bar(x + 0.2, [r["ideal"]["total"] for r in rows], 0.4, label="FLOPs-ideal speed-up vs dense", alpha=0.6)
        ax.plot(x, [r["speedup_vs_all_open"]["total"] for r in rows], "kx", label="realized vs all_open")
        ax.plot(x, [r["ideal_vs_all_open"]["total"] for r in rows], "r_", markersize=14, label="ideal vs all_open")
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("speed-up (total decode)")
        ax.set_title(f"beam {run['beam']}, ctc_weight {run['ctc_weight']}")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_output(path, "wb") as f:
        f.write(buf.getvalue())


# ---------------------------------------------------------------------------- main
def read_utterances(args, fs: int) -> List[np.ndarray]:
    if args.wav_scp:
        import soundfile

        from espnet_gated.utils import read_kaldi_map

        if not Path(args.wav_scp).is_file():
            raise FileNotFoundError(f"--wav_scp not found: {args.wav_scp}")
        utts = []
        for key, path in list(read_kaldi_map(args.wav_scp).items())[: args.n_utts]:
            try:
                audio, rate = soundfile.read(path, dtype="float32")
            except Exception as e:
                raise ValueError(f"{args.wav_scp}: cannot read '{path}' of utterance {key} ({e})") from e
            if rate != fs:
                raise ValueError(f"{args.wav_scp}: {path} has {rate} Hz, the model wants {fs} Hz")
            utts.append(audio if audio.ndim == 1 else audio[:, 0])
        if not utts:
            raise ValueError(f"{args.wav_scp} lists no utterances")
        return utts
    rng = np.random.default_rng(args.seed)
    utts = []
    for _ in range(args.n_utts):
        # throughput mode: lengths spread over 0.5-1.5 x --utt_sec, as in a real test set
        sec = args.utt_sec * (rng.uniform(0.5, 1.5) if args.throughput else 1.0)
        t = np.arange(int(round(sec * fs))) / fs
        wave = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.size)
        utts.append(wave.astype(np.float32))
    return utts


def build_s2ts(args, paths: Dict, beam: int, ctc_weight: float, lang: str, task: str) -> Dict[str, Speech2Text]:
    kw = dict(
        beam_size=beam,
        ctc_weight=ctc_weight,
        maxlenratio=-float(args.decode_len) if args.decode_len > 0 else args.maxlenratio,
        minlenratio=0.0,
        lang_sym=lang,
        task_sym=task,
        device=args.device,
        nbest=1,
    )
    s2ts = {
        "dense": TimedSpeech2Text(str(paths["dense"][0]), str(paths["dense"][1]), **kw),
        "gated": GatedSpeech2Text(str(paths["gated"][0]), str(paths["gated"][1]), dtype=args.dtype, **kw),
    }
    if paths.get("exported"):
        s2ts["exported"] = GatedSpeech2Text(
            str(paths["exported"][0]), str(paths["exported"][1]), dtype=args.dtype, **kw
        )
    if args.decode_len > 0:
        for s2t in s2ts.values():
            suppress_eos(s2t.s2t_model)
    return s2ts


def run_bench(args) -> Dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if args.n_utts < 1 or args.repeats < 1:
        raise ValueError("--n_utts and --repeats must be >= 1")
    lang, task = f"<{args.lang_sym.strip('<>')}>", f"<{args.task_sym.strip('<>')}>"
    logger.info(f"preparing models under {out / 'models'}")
    setup = prepare_models(args, out)
    config, gated = setup["config"], setup["gated_model"]
    layout = gated.gate_layout
    n_enc, n_dec = layout.n_layers["enc"], layout.n_layers["dec"]
    n_gated = {side: len(layout.slot_indices(side)) for side in ("enc", "dec")}
    paths = {"gated": setup["gated"], "dense": setup["dense"]}
    export_masks, export_info = None, None
    if not args.no_export:
        spec = args.export_mask
        mask_text = None
        if spec == "auto" and setup["trained"] and not gated.gate_predictor.use_audio:
            lang_task = (lang, task)
        else:
            lang_task = None
            if spec == "auto":
                spec = "both@0.5"
            if "@" in spec:
                side, s = spec.split("@")
                enc = spread_mask(n_enc, len(ENCODER_MODULES), float(s)) if side in ("enc", "both") else None
                dec = spread_mask(n_dec, len(DECODER_MODULES), float(s)) if side in ("dec", "both") else None
                enc = torch.ones(n_enc, len(ENCODER_MODULES)) if enc is None else enc
                dec = torch.ones(n_dec, len(DECODER_MODULES)) if dec is None else dec
                mask_text = format_mask(enc, dec)
            else:
                mask_text = spec
        logger.info(f"exporting {lang_task or mask_text} to {out / 'models' / 'exported'}")
        export_info = export(
            paths["gated"][0],
            paths["gated"][1],
            out / "models" / "exported",
            mask=mask_text,
            lang_sym=lang_task[0] if lang_task else None,
            task_sym=lang_task[1] if lang_task else None,
        )
        parsed = parse_mask(export_info["mask"])
        export_masks = (torch.tensor(parsed["enc"], dtype=torch.float), torch.tensor(parsed["dec"], dtype=torch.float))
        paths["exported"] = (Path(export_info["config"]), Path(export_info["model_file"]))
        dense_sd = read_state_dict(paths["dense"][1])
        export_info["params"]["dense"] = int(sum(v.numel() for v in dense_sd.values() if v.is_floating_point()))
        export_info["bytes"]["dense_model_file"] = Path(paths["dense"][1]).stat().st_size
        export_info["bytes"]["gated_model_file"] = Path(paths["gated"][1]).stat().st_size
    fs = config["frontend_conf"].get("fs", 16000) if config.get("frontend_conf") else 16000
    fs = int(fs) if not isinstance(fs, str) else 16000
    speeches = read_utterances(args, fs)
    natural = (config.get("preprocessor_conf") or {}).get("speech_length", 30) is None
    n_mels = (config.get("frontend_conf") or {}).get("n_mels", 80)
    runs = []
    for beam in args.beam:
        for ctc_weight in args.ctc_weight:
            logger.info(f"beam {beam}, ctc_weight {ctc_weight}: loading models")
            s2ts = build_s2ts(args, paths, beam, ctc_weight, lang, task)
            probes = {k: Probe(s.s2t_model) for k, s in s2ts.items()}
            model = s2ts["gated"].s2t_model
            if ctc_weight > 0 and args.decode_len > 0:
                frames = probes_frames(s2ts["gated"], speeches[0], natural)
                if args.decode_len + 4 >= frames:
                    raise ValueError(
                        f"--decode_len {args.decode_len} is too long for CTC prefix scoring on {frames} encoder "
                        f"frames (ESPnet's CTC scorer needs prefix length < frames): lower it or raise --utt_sec"
                    )
            variants = make_variants(args, n_enc, n_dec, setup["trained"], export_masks)
            runner = Runner(args, s2ts, probes, natural)
            chunks = [speeches[i : i + args.batch] for i in range(0, len(speeches), args.batch)]
            warm = {}
            for v in variants:  # one untimed decode per model and decoding path
                warm.setdefault((v.kind, v.cache), v)
            for _ in range(args.warmup):
                for v in warm.values():
                    runner.run(v, chunks[0], record=False)
            start, n_done, n_total = time.time(), 0, len(chunks) * args.repeats
            for rep in range(args.repeats):
                for c, chunk in enumerate(chunks):
                    k = (c + rep) % len(variants)
                    for v in variants[k:] + variants[:k]:
                        runner.run(v, chunk, first=c * args.batch)
                    n_done += 1
                    elapsed = time.time() - start
                    logger.info(
                        f"beam {beam}, ctc_weight {ctc_weight}: repeat {rep + 1}/{args.repeats}, "
                        f"{min((c + 1) * args.batch, len(speeches))}/{len(speeches)} utterances x {len(variants)} "
                        f"variants ({elapsed:.0f} s, ETA {elapsed / n_done * (n_total - n_done):.0f} s)"
                    )
            rows = summarize(variants, model, ctc_weight, n_mels, n_gated, args.stat)
            if export_info is not None:
                exp_v = next(v for v in variants if v.kind == "exported")
                want = [r["mask"] for r in exp_v.records]
                ref = next((v for v in variants if v.kind == "gated" and [r["mask"] for r in v.records] == want), None)
                same = None if ref is None else [r["yseq"] for r in ref.records] == [r["yseq"] for r in exp_v.records]
                export_info.setdefault("same_hyps_as_gated", {})[f"beam{beam}_ctc{ctc_weight:g}"] = same
                for row in rows:
                    if row["variant"] == "exported":
                        row["same_hyps_as_gated"] = same
            runs.append(dict(beam=beam, ctc_weight=ctc_weight, variants=rows, targets=targets(rows, args.sparsities)))
            for p in probes.values():
                for h in p.handles:
                    h.remove()
            del s2ts
    dims = SIZES.get(args.size) if not setup["trained"] else None
    report = dict(
        meta=dict(
            model=(
                f"trained gated model {args.s2t_train_config}"
                if setup["trained"]
                else f"random OWSM v3.1-{args.size}-sized weights (d={dims['d']}, {dims['layers']}+{dims['layers']} "
                f"layers, {dims['heads']} heads, ffn {dims['ffn']}, vocab {args.vocab_size or dims['vocab']})"
            ),
            params={"gated": int(sum(p.numel() for p in gated.parameters()))},
            device=args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()})",
            threads=args.threads,
            torch=torch.__version__,
            n_utts=len(speeches),
            utt_desc=(f"{args.utt_sec:g} s" if not args.wav_scp else f"audio from {args.wav_scp}"),
            length_desc=(
                f"fixed decode length {args.decode_len} tokens (<eos> suppressed)"
                if args.decode_len > 0
                else f"natural decode length (maxlenratio {args.maxlenratio})"
            ),
            batch=args.batch,
            repeats=args.repeats,
            stat=args.stat,
            decode_len=args.decode_len,
            sparsities=list(args.sparsities),
            sides=list(args.sides),
            mask_rule="layer l closes module types (l + r) mod n_types, rounds r = 0, 1, ... (spread_mask)",
            n_gated=n_gated,
            date=time.strftime("%Y-%m-%d %H:%M:%S"),
            command=" ".join(sys.argv),
        ),
        runs=runs,
        export=export_info,
    )
    atomic_write(out / "bench.json", json.dumps(report, indent=1))
    text = markdown(report)
    atomic_write(out / "bench.md", text + "\n")
    plot(report, out / "bench.png")
    return report


# ---------------------------------------------------------------------------- throughput
def throughput_variants(args, n_enc: int, n_dec: int, trained: bool) -> List[Variant]:
    """ESPnet's dense decoding (one utterance at a time), then per batch size the gated model
    with every gate open, with its predicted (learned) masks and with 50% decoder sparsity; for
    batches of several utterances also the first two with ESPnet's own search instead of ours
    (``+espnet_search``: utterance-batched on 202611, one utterance at a time on 202511)."""
    ones_e, ones_d = torch.ones(n_enc, len(ENCODER_MODULES)), torch.ones(n_dec, len(DECODER_MODULES))
    dec50 = spread_mask(n_dec, len(DECODER_MODULES), 0.5)
    predicted = "learned" if trained else "predicted"
    variants = [Variant("dense", "dense")]
    for b in args.batch:
        variants += [
            Variant("all_open", "gated", enc_mask=ones_e, dec_mask=ones_d, batch=b),
            Variant(predicted, "gated", side="pred", predictor=True, batch=b),
            Variant("dec@0.5", "gated", side="dec", sparsity=0.5, enc_mask=ones_e, dec_mask=dec50, batch=b),
        ]
        if b > 1:
            variants += [
                Variant("all_open+espnet_search", "gated", enc_mask=ones_e, dec_mask=ones_d, batch=b, search="espnet"),
                Variant(f"{predicted}+espnet_search", "gated", side="pred", predictor=True, batch=b, search="espnet"),
            ]
    return variants


def decode_set(runner: Runner, v: Variant, speeches: Sequence[np.ndarray]) -> Dict:
    """Decode every utterance with variant ``v``: wall time, its encoder/search/CTC split and
    the hypotheses. The gated variants sort by length and decode ``v.batch`` at a time."""
    args = runner.args
    with runner._setup(v) as s2t:
        sync(args.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        if v.kind == "dense":
            s2t.ctc_s, dec_s, results = 0.0, 0.0, []
            for speech in speeches:
                with natural_length(s2t, speech, runner.natural):
                    results.append(s2t(speech))
                dec_s += s2t.decoder_s
            sync(args.device)
            wall = time.perf_counter() - start
            timing = {"encoder_s": wall - dec_s, "decoder_s": dec_s, "ctc_s": s2t.ctc_s}
        else:
            decoding = s2t.decode_batch(list(speeches), batch_size=v.batch, masks=v.masks(), search=v.search)
            results = decoding.nbests
            sync(args.device)
            wall = time.perf_counter() - start
            timing = decoding.timing
        cpu = time.process_time() - cpu_start
    hyps = [r[0][4].yseq.tolist() if r else [] for r in results]
    return dict(
        wall_s=wall,
        cpu_s=cpu,
        enc_s=timing["encoder_s"],
        dec_s=timing["decoder_s"],
        ctc_s=timing["ctc_s"] if v.search == "ours" else None,  # ESPnet's search is not instrumented
        hyps=hyps,
    )


def summarize_throughput(variants: List[Variant], n_utts: int, audio_s: float) -> List[Dict]:
    """Per variant its fastest whole-set decode: utterances per second, real-time factor,
    speed-up over ESPnet's dense decoding (also in process CPU time, which other processes
    on a shared machine disturb less than wall time), the CTC prefix scorer's share of the time."""
    rows = []
    dense = min(variants[0].records, key=lambda r: r["wall_s"])
    for v in variants:
        best = min(v.records, key=lambda r: r["wall_s"])
        same = sum(a == b for a, b in zip(best["hyps"], dense["hyps"], strict=True)) / n_utts
        rows.append(
            dict(
                variant=v.name,
                batch=v.batch,
                wall_s=best["wall_s"],
                utt_per_s=n_utts / best["wall_s"],
                rtf=best["wall_s"] / audio_s,
                speedup=dense["wall_s"] / best["wall_s"],
                cpu_s=best["cpu_s"],
                speedup_cpu=dense["cpu_s"] / best["cpu_s"],
                enc_s=best["enc_s"],
                dec_s=best["dec_s"],
                ctc_s=best["ctc_s"],
                ctc_share=None if best["ctc_s"] is None else best["ctc_s"] / best["wall_s"],
                same_hyps_as_dense=same,
                walls=[r["wall_s"] for r in v.records],
            )
        )
    return rows


def run_throughput(args) -> Dict:
    """Decode a whole set once per variant and repeat, interleaved (see the module docstring)."""
    if (args.n_utts is not None and args.n_utts < 1) or args.repeats < 1:
        raise ValueError("--n_utts and --repeats must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    lang, task = f"<{args.lang_sym.strip('<>')}>", f"<{args.task_sym.strip('<>')}>"
    setup = prepare_models(args, out)
    config, gated = setup["config"], setup["gated_model"]
    n_enc, n_dec = gated.gate_layout.n_layers["enc"], gated.gate_layout.n_layers["dec"]
    paths = {"gated": setup["gated"], "dense": setup["dense"]}
    fs = int((config.get("frontend_conf") or {}).get("fs", 16000))
    speeches = read_utterances(args, fs)
    audio_s = sum(len(x) for x in speeches) / fs
    natural = (config.get("preprocessor_conf") or {}).get("speech_length", 30) is None
    runs = []
    for ctc_weight in args.ctc_weight:
        beam = args.beam[0]
        s2ts = build_s2ts(args, paths, beam, ctc_weight, lang, task)
        if ctc_weight > 0 and args.decode_len > 0:
            shortest = min(speeches, key=len)
            frames = probes_frames(s2ts["gated"], shortest, natural)
            if args.decode_len + 4 >= frames:
                raise ValueError(
                    f"--decode_len {args.decode_len} is too long for CTC prefix scoring on the {frames} encoder "
                    "frames of the shortest utterance: lower it or raise --utt_sec"
                )
        variants = throughput_variants(args, n_enc, n_dec, setup["trained"])
        runner = Runner(args, s2ts, {}, natural)
        for v in variants[: 1 + 3 * len(args.batch) : 3]:  # warm-up: dense and each batch size once, untimed
            decode_set(runner, v, speeches[: max(v.batch, 1)])
        start, n_total = time.time(), args.repeats * len(variants)
        for rep in range(args.repeats):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                rec = decode_set(runner, v, speeches)
                v.records.append(rec)
                n_done = sum(len(x.records) for x in variants)
                elapsed = time.time() - start
                logger.info(
                    f"ctc_weight {ctc_weight}: {v.name} batch {v.batch}: {len(speeches) / rec['wall_s']:.2f} utt/s "
                    f"({n_done}/{n_total} set decodes, {elapsed:.0f} s, "
                    f"ETA {elapsed / n_done * (n_total - n_done):.0f} s)"
                )
        runs.append(
            dict(beam=beam, ctc_weight=ctc_weight, variants=summarize_throughput(variants, len(speeches), audio_s))
        )
        del s2ts
    lengths = sorted(len(x) / fs for x in speeches)
    dims = SIZES.get(args.size) if not setup["trained"] else None
    report = dict(
        meta=dict(
            mode="throughput",
            model=(
                f"trained gated model {args.s2t_train_config}"
                if setup["trained"]
                else f"random OWSM v3.1-{args.size}-sized weights (d={dims['d']}, {dims['layers']}+{dims['layers']} "
                f"layers, {dims['heads']} heads, ffn {dims['ffn']}, vocab {args.vocab_size or dims['vocab']})"
            ),
            device=args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()})",
            threads=args.threads,
            torch=torch.__version__,
            dtype=args.dtype,
            n_utts=len(speeches),
            audio_s=audio_s,
            utt_s=dict(min=lengths[0], median=statistics.median(lengths), max=lengths[-1]),
            utt_desc=f"audio from {args.wav_scp}" if args.wav_scp else f"synthetic, 0.5-1.5 x {args.utt_sec:g} s",
            length_desc=(
                f"fixed decode length {args.decode_len} tokens (<eos> suppressed)"
                if args.decode_len > 0
                else f"natural decode length (maxlenratio {args.maxlenratio})"
            ),
            batches=list(args.batch),
            repeats=args.repeats,
            date=time.strftime("%Y-%m-%d %H:%M:%S"),
            command=" ".join(sys.argv),
        ),
        runs=runs,
    )
    atomic_write(out / "bench.json", json.dumps(report, indent=1))
    atomic_write(out / "bench.md", throughput_markdown(report) + "\n")
    throughput_plot(report, out / "bench.png")
    return report


def throughput_markdown(report: Dict) -> str:
    m = report["meta"]
    lines = [
        "# espnet_gated throughput benchmark",
        "",
        f"{m['model']}; {m['device']} ({m['threads']} threads), torch {m['torch']}, gated variants in {m['dtype']}; "
        f"{m['n_utts']} utterances ({m['utt_desc']}; {m['audio_s']:.1f} s of audio, {m['utt_s']['min']:.1f}-"
        f"{m['utt_s']['max']:.1f} s), {m['length_desc']}.",
        "Every variant decodes the whole set; the gated ones sorted by length, `batch` utterances at a time",
        "(encoder and beam search batched), ESPnet's dense `Speech2Text` one at a time (its only mode). Fastest of",
        f"{m['repeats']} interleaved repeats. x dense = utterances per second over the dense model's (cpu: the same in",
        "process CPU time, less disturbed by other processes on a shared machine); RTF = decoding time / audio time;",
        "CTC = share of the time in CTC prefix scoring (no gate removes it; not measured in ESPnet's search).",
        "",
    ]
    for run in report["runs"]:
        lines += [
            f"## beam {run['beam']}, ctc_weight {run['ctc_weight']:g}",
            "",
            "| variant | batch | utt/s | RTF | x dense | x dense (cpu) | CTC | encoder s | search s | hyps = dense |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run["variants"]:
            ctc = "-" if r["ctc_share"] is None else f"{100 * r['ctc_share']:.0f}%"
            lines.append(
                f"| {r['variant']} | {r['batch']} | {r['utt_per_s']:.2f} | {r['rtf']:.3f} | {r['speedup']:.2f} "
                f"| {r['speedup_cpu']:.2f} | {ctc} "
                f"| {r['enc_s']:.2f} | {r['dec_s']:.2f} "
                f"| {100 * r['same_hyps_as_dense']:.0f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def throughput_plot(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, ax = plt.subplots(figsize=(10, 4))
    names = [f"{r['variant']} b{r['batch']}" for r in runs[0]["variants"]]
    x = np.arange(len(names))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        ax.bar(
            x + (i - (len(runs) - 1) / 2) * width,
            [r["speedup"] for r in run["variants"]],
            width,
            label=f"ctc_weight {run['ctc_weight']:g}",
        )
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("utterances/s vs ESPnet dense")
    ax.set_title(report["meta"]["model"][:90], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_output(path, "wb") as f:
        f.write(buf.getvalue())


def probes_frames(s2t: GatedSpeech2Text, speech, natural: bool) -> int:
    """Encoder frames of one utterance (one all-open encoder pass)."""
    probe = Probe(s2t.s2t_model)
    model = s2t.s2t_model
    layout = model.gate_layout
    ones = (torch.ones(layout.n_layers["enc"], len(ENCODER_MODULES)), torch.ones(layout.n_layers["dec"], 3))
    try:
        with natural_length(s2t, speech, natural), torch.no_grad():
            x = s2t._prepare(speech)[None].to(s2t.device)
            model.encode_gated(x, torch.tensor([x.size(1)], device=x.device), None, *ones)
        return probe.frames[0][1]
    finally:
        for h in probe.handles:
            h.remove()


def _floats(text: str) -> List[float]:
    return [float(x) for x in text.replace(",", " ").split()]


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.replace(",", " ").split()]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time dense ESPnet vs gated decoding (see the module docstring)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage:", 1)[1].split("\n\n", 6)[0],
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output directory (bench.md, bench.json, bench.png, models/); default exp/bench/<mode>_<size>_<time>",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="decode the whole set per variant (sorted by length, --batch at a time): utterances/s and RTF",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="base", help="backbone size for random weights")
    parser.add_argument(
        "--vocab_size",
        type=int,
        default=None,
        help="vocabulary for random weights (default: base/small 50000 as OWSM v3.1, tiny 200)",
    )
    parser.add_argument("--s2t_train_config", default=None, help="config.yaml of a trained gated model")
    parser.add_argument("--s2t_model_file", default=None, help="its weights")
    parser.add_argument(
        "--wav_scp", default=None, help="decode these utterances (first --n_utts) instead of synthetic audio"
    )
    parser.add_argument("--lang_sym", default="eng")
    parser.add_argument("--task_sym", default="asr")
    parser.add_argument("--beam", type=_ints, default=[5], help='beam sizes, e.g. "5 10"')
    parser.add_argument(
        "--ctc_weight",
        type=_floats,
        default=None,
        help='CTC weights at decoding, e.g. "0 0.3" (default 0; throughput: "0 0.5")',
    )
    parser.add_argument(
        "--batch",
        type=_ints,
        default=[1],
        help='utterances decoded together by the gated variants (throughput: several, e.g. "1 16")',
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="of the gated variants (bfloat16/float16: autocast, float32 gates); ESPnet's dense model stays float32",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--n_utts", type=int, default=None, help="utterances (default 4; throughput: all of --wav_scp, or 32 synthetic)"
    )
    parser.add_argument("--utt_sec", type=float, default=5.0, help="synthetic utterance length (and padding length)")
    parser.add_argument(
        "--decode_len",
        type=int,
        default=None,
        help="fixed number of decoded tokens (<eos> suppressed); 0 = natural (default: 30, a trained model 0)",
    )
    parser.add_argument("--maxlenratio", type=float, default=0.0, help="with --decode_len 0")
    parser.add_argument("--sparsities", type=_floats, default=[0.25, 0.5, 0.75], help='e.g. "0.25 0.5 0.75"')
    parser.add_argument("--sides", type=lambda s: s.split(), default=["enc", "dec", "both"], help='e.g. "enc dec both"')
    parser.add_argument(
        "--export_mask", default="auto", help='mask of the exported variant: "auto", "<side>@<s>" or "enc=... dec=..."'
    )
    parser.add_argument("--no_export", action="store_true", help="skip the exported variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed decodes per model before timing")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="decode every utterance this often per variant (interleaved); keep the fastest",
    )
    parser.add_argument("--stat", choices=("median", "mean"), default="median", help="over utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_level", default="WARNING", help="of ESPnet's own logs (progress is always shown)")
    return parser


def resolve_defaults(args) -> None:
    """Fill the options whose default depends on the mode or the model (see their help)."""
    if args.ctc_weight is None:
        args.ctc_weight = [0.0, 0.5] if args.throughput else [0.0]
    if args.n_utts is None:
        args.n_utts = None if args.throughput and args.wav_scp else (32 if args.throughput else 4)
    if args.decode_len is None:
        args.decode_len = 0 if args.s2t_train_config else 30
    if args.out is None:
        what = Path(args.s2t_train_config).parent.name if args.s2t_train_config else args.size
        mode = "throughput" if args.throughput else "latency"
        args.out = str(Path("exp") / "bench" / f"{mode}_{what}_{time.strftime('%Y%m%d-%H%M%S')}")


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    resolve_defaults(args)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    logger.setLevel(logging.INFO)  # progress lines, while ESPnet's per-utterance INFO logs follow --log_level
    for side in args.sides:
        if side not in ("enc", "dec", "both"):
            raise UsageError(f"--sides takes enc, dec, both; got '{side}'")
    if any(not 0 <= s <= 1 for s in args.sparsities):
        raise UsageError("--sparsities must be in [0, 1]")
    if args.s2t_train_config is None and args.s2t_model_file is not None:
        raise UsageError("--s2t_model_file needs --s2t_train_config")
    if any(b < 1 for b in args.batch):
        raise UsageError("--batch must be >= 1")
    if not args.throughput:
        if len(args.batch) != 1:
            raise UsageError("several --batch sizes need --throughput")
        args.batch = args.batch[0]
    logger.info(f"output: {args.out}")
    report = run_throughput(args) if args.throughput else run_bench(args)
    print((throughput_markdown if args.throughput else markdown)(report))
    return report


if __name__ == "__main__":
    main()
