"""Throughput mode: each variant decodes the whole set, once per repeat, the variants interleaved.

The set is ``--wav_scp`` or ``--n_utts`` synthetic utterances whose lengths spread over 0.5-1.5 x
``--utt_sec``. The variants (:func:`espnet_gated.bench.variants.throughput_variants`): ESPnet's dense
``Speech2Text`` one utterance at a time (its only mode), and per ``--batch`` size the gated model with
every gate open, its predicted (learned) masks and 50% decoder sparsity (``dec@0.5``), each sorted by
length and decoded ``--batch`` at a time (encoder and beam search batched), and for ``--batch`` > 1
the first two again with ESPnet's own search (``+espnet_search``). Per ``--ctc_weight`` the report
gives utterances per second, the real-time factor, the speed-up over dense, the share of time in CTC
prefix scoring (ours only) and how many hypotheses equal the dense model's.
"""

import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from espnet_gated.bench.accounting import summarize_throughput
from espnet_gated.bench.instrumentation import check_ctc_length, decoder_caches, sync
from espnet_gated.bench.models import (
    build_decoders,
    describe_device,
    describe_length,
    describe_model,
    prepare_models,
    read_utterances,
    sample_rate,
    symbols,
)
from espnet_gated.bench.rendering import throughput_markdown, throughput_plot
from espnet_gated.bench.variants import Variant, throughput_variants
from espnet_gated.utils import atomic_write

logger = logging.getLogger("espnet_gated.bench")


def decode_set(args, s2ts: Dict, v: Variant, speeches: Sequence[np.ndarray]) -> Dict:
    """Decode every utterance with variant ``v``: wall time, process CPU time, the encoder/search/CTC
    split and the hypotheses. The gated variants sort by length and decode ``v.batch`` at a time."""
    with decoder_caches(s2ts[v.kind], v.cache) as s2t:
        sync(args.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        if v.kind == "dense":
            s2t.ctc_s, dec_s, results = 0.0, 0.0, []
            for speech in speeches:
                results.append(s2t.decode_samples(speech, s2ts["gated"].prepared_length(speech)))
                dec_s += s2t.decoder_s
            sync(args.device)
            wall = time.perf_counter() - start
            timing = {"encoder_s": wall - dec_s, "decoder_s": dec_s, "ctc_s": s2t.ctc_s}
        else:
            decoding = s2t.decode_batch(
                list(speeches), batch_size=v.batch, masks=v.masks(), search=v.search, **v.budget_request()
            )
            results = decoding.nbests
            sync(args.device)
            wall = time.perf_counter() - start
            timing = decoding.timing
        cpu = time.process_time() - cpu_start
    return dict(
        wall_s=wall,
        cpu_s=cpu,
        enc_s=timing["encoder_s"],
        dec_s=timing["decoder_s"],
        ctc_s=timing["ctc_s"],  # None where ESPnet's search ran (also where ours fell back to it)
        hyps=[r[0][4].yseq.tolist() if r else [] for r in results],
    )


def run_throughput(args) -> Dict:
    """Decode the whole set once per variant and repeat, interleaved, per ``--ctc_weight``; writes
    bench.json, bench.md and bench.png under ``--out`` and returns the report."""
    if (args.n_utts is not None and args.n_utts < 1) or args.repeats < 1:
        raise ValueError("--n_utts and --repeats must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    lang, task = symbols(args)
    models = prepare_models(args, out)
    fs = sample_rate(models.config)
    speeches = read_utterances(args, fs)
    audio_s = sum(len(x) for x in speeches) / fs
    runs = []
    for ctc_weight in args.ctc_weight:
        beam = args.beam[0]
        s2ts = build_decoders(args, models.files, beam, ctc_weight, lang, task)
        if ctc_weight > 0 and args.decode_len > 0:
            check_ctc_length(s2ts["gated"], speeches, args.decode_len)
        variants = throughput_variants(args, *models.n_layers, models.trained)
        for b in [None, *args.batch]:  # warm-up: dense and each batch size once, untimed
            v = next(v for v in variants if b is None or v.batch == b and v.kind == "gated")
            decode_set(args, s2ts, v, speeches[: v.batch])
        start, n_total = time.time(), args.repeats * len(variants)
        for rep in range(args.repeats):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                rec = decode_set(args, s2ts, v, speeches)
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
    report = dict(
        meta=dict(
            mode="throughput",
            model=describe_model(args, models.trained),
            device=describe_device(args.device),
            threads=args.threads,
            torch=torch.__version__,
            dtype=args.dtype,
            n_utts=len(speeches),
            audio_s=audio_s,
            utt_s=dict(min=lengths[0], median=statistics.median(lengths), max=lengths[-1]),
            utt_desc=f"audio from {args.wav_scp}" if args.wav_scp else f"synthetic, 0.5-1.5 x {args.utt_sec:g} s",
            length_desc=describe_length(args),
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
