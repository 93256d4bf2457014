#!/usr/bin/env python3
r"""Stage 3 (format): every utterance as a checked 16 kHz mono wav, plus utt2num_samples.

Reads a data directory (wav.scp, optional segments), decodes each recording once
(soundfile, or ffmpeg for m4a/mp3/...), downmixes (mean of the channels), resamples, cuts
segments, and writes a data directory whose wav.scp points at 16 kHz mono wavs; how many
recordings were resampled or downmixed is logged. Files that already are such wavs
(and are not segmented) are referenced, not copied. Bad audio (missing, empty, unreadable,
truncated, NaN, silent, shorter than --min_sec) stops the stage with an error naming the utterance and
file, or with ``--on_bad_audio skip`` is dropped, counted, and listed in
``<out_dir>/bad_audio.txt``. Converted wavs are written once (temp name + rename) and reused
on re-runs.

Usage:
    python -m espnet_gated.bin.format_wav --in_root data --out_root dump/raw \
        --audio_root dump/audio --sets "test_deu_asr test_fra_asr" --nj 2
"""

import argparse
import logging
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile

from espnet_gated.cli import entry_point, existing_dir
from espnet_gated.data.audio import AudioError, check_samples, is_plain_wav, read_audio
from espnet_gated.data.datadir import Utterance, read_data_dir, write_data_dir
from espnet_gated.utils import Progress

Result = Tuple[str, str, int, str]  # (utt_id, wav path, n_samples, problem or "")


def _write_wav(path: Path, audio: np.ndarray, fs: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    soundfile.write(str(tmp), audio, fs, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _format_recording(
    audio_path: str, utts: List[Utterance], audio_dir: str, fs: int, min_sec: float
) -> Tuple[List[Result], Dict[str, int]]:
    """Decode one recording; returns one result per utterance cut from it and what was
    converted (``resampled``/``downmixed``: 1 or 0)."""
    out_dir = Path(audio_dir)
    targets = {u.utt_id: out_dir / f"{u.utt_id}.wav" for u in utts}
    if all(t.exists() for t in targets.values()):  # done by an earlier run (written atomically)
        return [(u, str(t), soundfile.info(str(t)).frames, "") for u, t in targets.items()], {}
    try:
        audio, facts = read_audio(audio_path, fs)
    except AudioError as e:
        return [(u.utt_id, "", 0, f"utterance '{u.utt_id}': {e}") for u in utts], {}
    converted = {"resampled": int(facts["orig_fs"] != fs), "downmixed": int(facts["channels"] > 1)}
    plain = utts[0].start is None and is_plain_wav(audio_path, fs)
    results = []
    for u in utts:
        where = f"utterance '{u.utt_id}' ({audio_path})"
        piece = audio
        if u.start is not None:
            piece = audio[int(round(u.start * fs)) : int(round(u.end * fs))]
            if u.end * fs > audio.size + fs // 100:
                results.append(
                    (u.utt_id, "", 0, f"{where}: segment ends at {u.end} s, after the audio ({audio.size / fs:.2f} s)")
                )
                continue
        problem = check_samples(piece, fs, where, min_sec)
        if problem:
            results.append((u.utt_id, "", 0, problem))
        elif plain:
            results.append((u.utt_id, audio_path, piece.size, ""))
        else:
            _write_wav(targets[u.utt_id], piece, fs)
            results.append((u.utt_id, str(targets[u.utt_id]), piece.size, ""))
    return results, converted


def format_dir(
    in_dir: Path,
    out_dir: Path,
    audio_dir: Path,
    fs: int = 16000,
    nj: int = 1,
    on_bad_audio: str = "error",
    min_sec: float = 0.0,
) -> Dict[str, int]:
    """Run the stage on one data directory; returns counts (kept, bad)."""
    utts = read_data_dir(in_dir)
    by_recording: Dict[str, List[Utterance]] = defaultdict(list)
    for u in utts:
        by_recording[u.audio].append(u)
    audio_dir.mkdir(parents=True, exist_ok=True)
    logging.info(f"{in_dir}: {len(utts)} utterances in {len(by_recording)} recordings")
    progress = Progress(len(utts))
    results: List[Result] = []
    converted: Dict[str, int] = defaultdict(int)
    with ProcessPoolExecutor(max_workers=max(1, nj)) as pool:
        futures = [
            pool.submit(_format_recording, path, group, str(audio_dir), fs, min_sec)
            for path, group in by_recording.items()
        ]
        for future in futures:
            done, facts = future.result()
            results += done
            for key, n in facts.items():
                converted[key] += n
            progress.update(len(done))
    if converted["resampled"] or converted["downmixed"]:
        logging.info(
            f"{in_dir}: resampled {converted['resampled']} recording(s) to {fs} Hz, "
            f"downmixed {converted['downmixed']} multi-channel recording(s) to mono"
        )
    bad = sorted(r for r in results if r[3])
    if bad and on_bad_audio == "error":
        raise AudioError(
            f"{len(bad)} bad utterance(s) in {in_dir}; first: {bad[0][3]} (use --on_bad_audio skip to drop them)"
        )
    if bad:
        logging.warning(
            f"{in_dir}: skipped {len(bad)} bad utterance(s), listed in {out_dir / 'bad_audio.txt'}; first: {bad[0][3]}"
        )
    good = {r[0]: r for r in results if not r[3]}
    if not good:
        raise AudioError(f"{in_dir}: no usable audio left")
    kept = [replace(u, audio=good[u.utt_id][1], recording=None, start=None, end=None) for u in utts if u.utt_id in good]
    write_data_dir(
        out_dir,
        kept,
        extra_files={"utt2num_samples": {k: str(r[2]) for k, r in good.items()}},
        other_files={"bad_audio.txt": "".join(f"{r[0]} {r[3]}\n" for r in bad)} if bad else None,
    )
    return {"kept": len(kept), "bad": len(bad), **converted}


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in_root", type=existing_dir, required=True, help="holds the input data dirs")
    parser.add_argument("--out_root", type=Path, required=True, help="the formatted dirs go here")
    parser.add_argument("--audio_root", type=Path, required=True, help="converted wavs go to <audio_root>/<set>")
    parser.add_argument("--sets", required=True, help="space-separated data dir names")
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--min_sec", type=float, default=0.0, help="shorter utterances count as bad audio")
    parser.add_argument("--on_bad_audio", choices=("error", "skip"), default="error")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    for name in args.sets.split():
        out_dir = args.out_root / name
        # AudioError and the data-dir checks name the file and utterance
        counts = format_dir(
            args.in_root / name, out_dir, args.audio_root / name, args.fs, args.nj, args.on_bad_audio, args.min_sec
        )
        logging.info(f"{out_dir}: {counts['kept']} utterances, {counts['bad']} skipped")


if __name__ == "__main__":
    main()
