"""The benchmark's reports: bench.md (a table per beam and CTC weight) and bench.png, for either mode."""

import io
from pathlib import Path
from typing import Dict

import numpy as np

from espnet_gated.utils import atomic_output


def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _triple(d: Dict) -> str:
    return "/".join(_f(d.get(p)) for p in ("enc", "dec", "total"))


def latency_markdown(report: Dict) -> str:
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
            "- gate predictor share of decode time (target < 1%): "
            + (", ".join(f"{k} {v:.2f}%" for k, v in t["predictor_pct"].items()) if "predictor_pct" in t else "-"),
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


def latency_plot(report: Dict, path: Path) -> None:
    plt = _pyplot()
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
    save_figure(fig, path)


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
    plt = _pyplot()
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
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_output(path, "wb") as f:
        f.write(buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
