"""Latency mode: every variant decodes every utterance, the variants round-robin per utterance.

On the same utterances, in one run, the variants (:mod:`espnet_gated.bench.variants`) are decoded
round-robin per utterance (after a warm-up, starting with a different variant each utterance),
``--batch`` utterances at a time for the gated ones; each decode is timed and probed
(:mod:`espnet_gated.bench.instrumentation`) and summed up (:mod:`espnet_gated.bench.accounting`).
"""

import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from espnet_gated.bench.accounting import latency_targets, summarize_latency
from espnet_gated.bench.instrumentation import Probe, check_ctc_length, decoder_caches, sync
from espnet_gated.bench.models import (
    build_decoders,
    describe_device,
    describe_length,
    describe_model,
    export_model,
    prepare_models,
    read_utterances,
    sample_rate,
    symbols,
)
from espnet_gated.bench.rendering import latency_markdown, latency_plot
from espnet_gated.bench.variants import Variant, latency_variants
from espnet_gated.method.layout import format_mask
from espnet_gated.utils import atomic_write

logger = logging.getLogger("espnet_gated.bench")


class LatencyRunner:
    """Decodes utterances with one variant and records per utterance its times, hypothesis, mask and
    what ran (encoder frames, decoder calls); ``s2ts`` and ``probes``: per model kind."""

    def __init__(self, args, s2ts: Dict, probes: Dict[str, Probe]):
        self.args, self.s2ts, self.probes = args, s2ts, probes

    def run(self, v: Variant, speeches: Sequence[np.ndarray], first: int = 0, record: bool = True) -> None:
        """Decode ``speeches`` (utterances ``first``, ``first + 1``, ...) with variant ``v``."""
        self.probes[v.kind].reset()
        with decoder_caches(self.s2ts[v.kind], v.cache):
            if self.args.batch > 1 and v.kind != "dense":
                records = self._decode_batch(v, speeches)
            else:
                records = [self._decode(v, speech) for speech in speeches]
        if record:
            v.records += [{**rec, "utt": first + j} for j, rec in enumerate(records)]

    def _decode(self, v: Variant, speech: np.ndarray) -> Dict:
        probe, s2t, device = self.probes[v.kind], self.s2ts[v.kind], self.args.device
        probe.reset()
        sync(device)
        start = time.perf_counter()
        if v.kind == "dense":
            results = s2t.decode_samples(speech, self.s2ts["gated"].prepared_length(speech))
        else:
            decoding = s2t.decode(speech, masks=v.masks(), **v.budget_request())
            results = decoding.nbests[0]
        sync(device)
        total = time.perf_counter() - start
        if v.kind == "dense":
            dec_s, gates_s, mask = s2t.decoder_s, 0.0, None
        else:
            dec_s, gates_s, mask = decoding.timing["decoder_s"], decoding.timing["gates_s"], decoding.masks[0]
        return dict(
            total_s=total,
            enc_s=total - dec_s,
            dec_s=dec_s,
            gates_s=gates_s,
            feat_frames=probe.frames[0][0],
            frames=probe.frames[0][1],
            steps=list(probe.steps),
            yseq=results[0][4].yseq.tolist() if results else [],
            mask=None if mask is None else format_mask(*mask),
        )

    def _decode_batch(self, v: Variant, speeches: Sequence[np.ndarray]) -> list:
        """One ``decode_batch``; its times are shared equally among the utterances."""
        probe, s2t, n = self.probes[v.kind], self.s2ts[v.kind], len(speeches)
        sync(self.args.device)
        start = time.perf_counter()
        decoding = s2t.decode_batch(list(speeches), masks=v.masks(), **v.budget_request())
        sync(self.args.device)
        total = time.perf_counter() - start
        timing = decoding.timing
        # decode_batch encodes the utterances longest first, in padded batches: each utterance
        # gets the (padded) frames of its batch
        order = sorted(range(n), key=lambda i: -s2t.prepared_length(speeches[i]))
        batch_of = [call for call in probe.frames for _ in range(call[2])]
        frames_of = {i: batch_of[k] for k, i in enumerate(order)}
        return [
            dict(
                total_s=total / n,
                enc_s=timing["encoder_s"] / n,
                dec_s=timing["decoder_s"] / n,
                gates_s=timing["gates_s"] / n,
                feat_frames=frames_of[j][0],
                frames=frames_of[j][1],
                steps=[(per, length) for length, utts, per in decoding.search_log if j in utts],
                yseq=decoding.nbests[j][0][4].yseq.tolist() if decoding.nbests[j] else [],
                mask=format_mask(*decoding.masks[j]),
            )
            for j in range(n)
        ]


def run_latency(args) -> Dict:
    """Time every variant on every utterance, per ``--beam`` and ``--ctc_weight``; writes bench.json,
    bench.md and bench.png under ``--out`` and returns the report."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if args.n_utts < 1 or args.repeats < 1:
        raise ValueError("--n_utts and --repeats must be >= 1")
    lang, task = symbols(args)
    logger.info(f"preparing models under {out / 'models'}")
    models = prepare_models(args, out)
    layout = models.gated.gate_layout
    n_gated = {side: len(layout.slot_indices(side)) for side in ("enc", "dec")}
    export_info, export_masks = None, None
    if not args.no_export:
        export_info, export_masks = export_model(args, models, lang, task, out)
    speeches = read_utterances(args, sample_rate(models.config))
    n_mels = (models.config.get("frontend_conf") or {}).get("n_mels", 80)
    runs = []
    for beam in args.beam:
        for ctc_weight in args.ctc_weight:
            logger.info(f"beam {beam}, ctc_weight {ctc_weight}: loading models")
            s2ts = build_decoders(args, models.files, beam, ctc_weight, lang, task)
            if ctc_weight > 0 and args.decode_len > 0:
                check_ctc_length(s2ts["gated"], speeches, args.decode_len)
            probes = {k: Probe(s.s2t_model) for k, s in s2ts.items()}
            variants = latency_variants(args, *models.n_layers, models.trained, export_masks)
            runner = LatencyRunner(args, s2ts, probes)
            decode_round_robin(args, runner, variants, speeches, f"beam {beam}, ctc_weight {ctc_weight}")
            model = s2ts["gated"].s2t_model
            rows = summarize_latency(variants, model, ctc_weight, n_mels, n_gated, args.stat)
            if export_info is not None:
                same = exported_like_gated(variants)
                export_info.setdefault("same_hyps_as_gated", {})[f"beam{beam}_ctc{ctc_weight:g}"] = same
                for row in rows:
                    if row["variant"] == "exported":
                        row["same_hyps_as_gated"] = same
            runs.append(dict(beam=beam, ctc_weight=ctc_weight, variants=rows, targets=latency_targets(rows)))
            for p in probes.values():
                p.remove()
            del s2ts
    report = dict(
        meta=dict(
            model=describe_model(args, models.trained),
            params={"gated": int(sum(p.numel() for p in models.gated.parameters()))},
            device=describe_device(args.device),
            threads=args.threads,
            torch=torch.__version__,
            n_utts=len(speeches),
            utt_desc=(f"{args.utt_sec:g} s" if not args.wav_scp else f"audio from {args.wav_scp}"),
            length_desc=describe_length(args),
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
    atomic_write(out / "bench.md", latency_markdown(report) + "\n")
    latency_plot(report, out / "bench.png")
    return report


def decode_round_robin(args, runner: LatencyRunner, variants, speeches, what: str) -> None:
    """Warm up once per model and decoding path, then decode ``--batch`` utterances at a time with every
    variant in turn, each chunk starting with another variant, ``--repeats`` times."""
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
                f"{what}: repeat {rep + 1}/{args.repeats}, "
                f"{min((c + 1) * args.batch, len(speeches))}/{len(speeches)} utterances x {len(variants)} "
                f"variants ({elapsed:.0f} s, ETA {elapsed / n_done * (n_total - n_done):.0f} s)"
            )


def exported_like_gated(variants) -> bool:
    """Whether the exported model found the hypotheses of the gated variant with its mask (None: no such variant)."""
    exp_v = next(v for v in variants if v.kind == "exported")
    want = [r["mask"] for r in exp_v.records]
    ref = next((v for v in variants if v.kind == "gated" and [r["mask"] for r in v.records] == want), None)
    return None if ref is None else [r["yseq"] for r in ref.records] == [r["yseq"] for r in exp_v.records]
