#!/usr/bin/env python3
r"""Stage 4 (filter) and test-set selection: subsets of formatted data directories.

Keeps the utterances whose duration (from utt2num_samples), target length, language and
task pass the filters. With ``--split_by_context`` a directory holding several
language-task pairs becomes one directory per pair, ``<set>_<lang>_<task>`` (scoring is
per language and task); a directory with a single pair keeps its name. ``--names_out``
receives the names of the written directories, one per line.

Usage:
    python -m espnet_gated.bin.subset_data --in_root dump/raw/org --out_root dump/raw \
        --sets "train dev" --min_sec 0.3 --max_sec 30 --langs deu,fra --tasks asr,st_eng
    python -m espnet_gated.bin.subset_data --in_root dump/raw --out_root dump/raw \
        --sets test --split_by_context true --names_out dump/raw/test_sets.txt
"""

import argparse
import logging
from collections import defaultdict
from pathlib import Path
from typing import List, Optional, Set

from espnet_gated.cli import entry_point, existing_dir
from espnet_gated.data.datadir import read_data_dir, write_data_dir
from espnet_gated.utils import atomic_write, read_kaldi_map


def _csv_set(value: str) -> Optional[Set[str]]:
    items = {v.strip().strip("<>") for v in value.replace(",", " ").split() if v.strip()}
    return items or None


def subset_dir(
    in_dir: Path,
    out_root: Path,
    min_sec: float = 0.0,
    max_sec: float = float("inf"),
    max_chars: int = 10**9,
    langs: Optional[Set[str]] = None,
    tasks: Optional[Set[str]] = None,
    split_by_context: bool = False,
    fs: int = 16000,
) -> List[str]:
    """Write the subset(s) of ``in_dir`` under ``out_root``; returns the written names."""
    utts = read_data_dir(in_dir)
    if not (in_dir / "utt2num_samples").is_file():
        raise ValueError(f"{in_dir / 'utt2num_samples'}: missing (format the audio first: espnet_gated.bin.format_wav)")
    num_samples = read_kaldi_map(in_dir / "utt2num_samples")
    lacking = sorted(u.utt_id for u in utts if not num_samples.get(u.utt_id, "").isdigit())
    if lacking:
        raise ValueError(f"{in_dir / 'utt2num_samples'}: no sample count for utterance(s) {lacking[:3]}")
    dropped = defaultdict(int)
    kept = []
    for u in utts:
        seconds = int(num_samples[u.utt_id]) / fs
        if langs is not None and u.lang not in langs:
            dropped["language"] += 1
        elif tasks is not None and u.task not in tasks:
            dropped["task"] += 1
        elif not min_sec <= seconds <= max_sec:
            dropped["duration"] += 1
        elif len(u.text) > max_chars or len(u.text_ctc) > max_chars:
            dropped["text length"] += 1
        else:
            kept.append(u)
    if dropped:
        logging.info(
            f"{in_dir}: kept {len(kept)} of {len(utts)} utterances; dropped "
            + ", ".join(f"{n} by {why}" for why, n in dropped.items())
            + f" (limits: {min_sec}-{max_sec} s, {max_chars} characters)"
        )
    if not kept and not split_by_context:
        raise ValueError(
            f"{in_dir}: no utterance passed the filters (dropped "
            + ", ".join(f"{n} by {why}" for why, n in dropped.items())
            + ")"
        )
    groups = defaultdict(list)
    for u in kept:
        groups[(u.lang, u.task) if split_by_context else None].append(u)
    if split_by_context and len(groups) == 1:
        groups = {None: kept}
    written = []
    for context, group in sorted(groups.items(), key=lambda kv: kv[0] or ("", "")):
        name = in_dir.name if context is None else f"{in_dir.name}_{context[0]}_{context[1]}"
        extra = {"utt2num_samples": {u.utt_id: num_samples[u.utt_id] for u in group}}
        write_data_dir(out_root / name, group, extra_files=extra)
        written.append(name)
    if not written:
        logging.warning(f"{in_dir}: no utterance passed the filters")
    return written


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in_root", type=existing_dir, required=True)
    parser.add_argument("--out_root", type=Path, required=True)
    parser.add_argument("--sets", required=True, help="space-separated data dir names")
    parser.add_argument("--min_sec", type=float, default=0.0)
    parser.add_argument("--max_sec", type=float, default=float("inf"))
    parser.add_argument("--max_chars", type=int, default=10**9, help="longest target/transcript kept")
    parser.add_argument("--langs", type=_csv_set, default=None, help="e.g. deu,fra (default: all)")
    parser.add_argument("--tasks", type=_csv_set, default=None, help="e.g. asr,st_eng (default: all)")
    parser.add_argument("--split_by_context", type=lambda s: s.lower() == "true", default=False)
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--names_out", type=Path, help="file that receives the written directory names")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    written = []
    for name in args.sets.split():  # an error names the directory and file
        written += subset_dir(
            args.in_root / name, args.out_root, args.min_sec, args.max_sec, args.max_chars,
            args.langs, args.tasks, args.split_by_context, args.fs,
        )  # fmt: skip
    if args.names_out:
        atomic_write(args.names_out, "".join(f"{n}\n" for n in written))


if __name__ == "__main__":
    main()
