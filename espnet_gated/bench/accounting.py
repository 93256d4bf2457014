"""From what ran to what the report says: times, executed MACs and their ratios.

Latency mode, per variant (median over utterances): encoder time (feature extraction, gate
predictor, encoder), decoder time (beam search) and their sum per utterance; speed-up vs dense;
analytic MACs of what was executed (``espnet_gated.method.flops``: input layer, encoder layers,
CTC projection when ``ctc_weight > 0``, gate predictor, and the beam search as it ran - rows and
prefix length of every decoder call); the FLOPs-ideal speed-up (dense MACs / executed MACs) and
realized/ideal; the same against ``all_open`` (the gating's own effect, with the decoder caches
in both). CTC prefix scoring (a Python loop over frames per token) is not in the MACs and is not
removed by gates: compare ``--ctc_weight`` values separately.

Throughput mode, per variant its fastest whole-set decode (:func:`summarize_throughput`).
"""

import statistics
from typing import Dict, List, Optional, Sequence

import torch

from espnet_gated.bench.variants import Variant
from espnet_gated.method.flops import ctc_macs, encoder_macs, input_layer_macs, search_macs, weight_macs
from espnet_gated.method.layout import parse_mask

PARTS = ("enc", "dec", "total")


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


def summarize_latency(
    variants: List[Variant], model, ctc_weight: float, n_mels: int, n_gated: Dict[str, int], stat_name: str = "median"
) -> List[Dict]:
    """Per-variant summary; times: ``stat_name`` (median or mean) over utterances of each
    utterance's fastest repeat. The first variant is ESPnet's dense one."""
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
            ms={part: 1000 * stat(r[f"{part}_s"] for r in v.records) for part in (*PARTS, "gates")},
            ms_min={part: 1000 * min(r[f"{part}_s"] for r in v.records) for part in PARTS},
            ms_mean={part: 1000 * statistics.fmean(r[f"{part}_s"] for r in v.records) for part in PARTS},
            macs={part: statistics.fmean(m[part] for m in macs) for part in PARTS},
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
            speed = {p: _ratio(ref["ms"][p], row["ms"][p]) for p in PARTS}
            ideal = {p: _ratio(ref["macs"][p], row["macs"][p]) for p in PARTS}
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


def latency_targets(rows: List[Dict]) -> Dict:
    """The figures the project aims at (gated code overhead, 50% decoder sparsity, realized/ideal,
    the gate predictor's share), from the rows of :func:`summarize_latency`."""
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
        out["predictor_pct"] = {r["variant"]: 100 * r["gate_predictor_share"] for r in pred}
    return out


def summarize_throughput(variants: Sequence[Variant], n_utts: int, audio_s: float) -> List[Dict]:
    """Per variant its fastest whole-set decode: utterances per second, real-time factor,
    speed-up over ESPnet's dense decoding (the first variant; also in process CPU time, which other
    processes on a shared machine disturb less than wall time), the CTC prefix scorer's share of the time."""
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
