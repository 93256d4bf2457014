"""CoVoST 2 (ASR and ST, X->en and en->X) on Common Voice v4 audio.

Layout read::

    <root>/<src>/validated.tsv                  Common Voice v4: client_id, path, sentence, ... (by name)
    <root>/<src>/clips/<clip>.mp3
    <covost_dir>/covost_v2.<src>_<tgt>.tsv      path, translation, split, ... (by name); by default
                                                next to validated.tsv, where fairseq's script puts them

Codes are Common Voice's (``zh-CN``, ``sv-SE``). Rows join on ``path``; ``split`` is train,
train_covost (extra training data, merged into train), dev or test; rows of other split
labels are skipped (and counted in the log), as fairseq's and HF's loaders do. Every TSV is read
verbatim (no quoting, no NA filtering: quotes and the word "NA" are text). A clip of the
pair file missing from validated.tsv is an error: CoVoST 2 needs exactly Common Voice v4
(cv-corpus-4-2019-12-10).

Tasks: ``st_<tgt>`` from each pair file and ``asr`` (transcript = validated.tsv's sentence)
from one pair per source language, its ``en`` pair (for English its alphabetically first),
so that ASR data is not repeated and follows CoVoST's splits. Ids are
``cv-<client>-<clip>-<task>``, as in :mod:`.common_voice`.

Usage::

    python -m espnet_gated.bin.prepare covost2 --root /corpora/cv-corpus-4-2019-12-10 --out data/covost2 \\
        --langs fr,deu --tasks asr,st_eng [--covost_dir /corpora/covost2]

    from espnet_gated.importers import prepare_covost2
    counts = prepare_covost2("/corpora/cv-corpus-4-2019-12-10", "data/covost2", langs=["fra"], tasks=["st_eng"])
"""

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_gated.data.datadir import Utterance
from espnet_gated.data.langs import to_iso3
from espnet_gated.importers.common import (
    CorpusError,
    Selection,
    absolute,
    nonblank,
    preferred,
    read_tsv,
    require_file,
    write_splits,
)
from espnet_gated.importers.common_voice import clip_file, read_clips, speaker_of
from espnet_gated.utils import PathLike

PAIR_FILE = re.compile(r"covost_v2\.([^_.]+)_([^_.]+)\.tsv")
SPLIT_OF = {"train": "train", "train_covost": "train", "dev": "dev", "test": "test"}


def find_pairs(root: Path, covost_dir: Optional[Path]) -> Dict[str, Dict[str, Path]]:
    """source code -> target code -> pair file."""
    files = sorted(covost_dir.glob("covost_v2.*.tsv")) if covost_dir else sorted(root.glob("*/covost_v2.*.tsv"))
    pairs: Dict[str, Dict[str, Path]] = {}
    for path in files:
        match = PAIR_FILE.fullmatch(path.name)
        if match:
            pairs.setdefault(match[1], {})[match[2]] = path
    return pairs


def read_pair(
    pair_file: Path, clips: Dict[str, Tuple[int, Dict[str, str]]], validated: Path
) -> List[Tuple[int, str, str, Dict[str, str]]]:
    """(line, split, translation, Common Voice row) of every row of a pair file."""
    rows, seen, unknown, skipped = [], {}, [], Counter()
    for lineno, row in read_tsv(pair_file, ("path", "translation", "split")):
        path = row["path"]
        if row["split"] not in SPLIT_OF:
            skipped[row["split"]] += 1
            continue
        if path in seen:
            raise CorpusError(f"{pair_file}:{lineno}: clip '{path}' already listed on line {seen[path]}")
        seen[path] = lineno
        if path not in clips:
            unknown.append((lineno, path))
            continue
        rows.append((lineno, SPLIT_OF[row["split"]], row["translation"], clips[path][1]))
    if unknown:
        lineno, path = unknown[0]
        raise CorpusError(
            f"{pair_file}:{lineno}: clip '{path}' is not in {validated} ({len(unknown)} such clips); "
            f"CoVoST 2 needs Common Voice v4 (cv-corpus-4-2019-12-10)"
        )
    if skipped:
        logging.info(f"{pair_file}: skipped rows of split labels other than {', '.join(SPLIT_OF)}: {dict(skipped)}")
    return rows


def prepare_covost2(
    root: PathLike,
    out: PathLike,
    langs: Optional[Iterable[str]] = None,
    tasks: Optional[Iterable[str]] = None,
    covost_dir: Optional[PathLike] = None,
) -> Dict[str, int]:
    """Write ``out/{train,dev,test}/`` with the selected source languages and tasks; returns the counts."""
    selection = Selection(langs, tasks)
    root = absolute(root)
    pairs = find_pairs(root, covost_dir and absolute(covost_dir))
    if not pairs:
        where = covost_dir or f"{root}/<src>"
        raise CorpusError(f"{where}: no covost_v2.<src>_<tgt>.tsv files (extract the covost_v2.*.tsv.tar.gz there)")
    splits: Dict[str, List[Utterance]] = {}
    for src in selection.pick(pairs, f"{root}: CoVoST 2 source languages"):
        lang = to_iso3(src)
        jobs = [(tgt, f"st_{to_iso3(tgt)}") for tgt in sorted(pairs[src])] + [(preferred(pairs[src], "en"), "asr")]
        jobs = [(tgt, task) for tgt, task in jobs if selection.wants(task)]
        if not jobs:
            continue
        validated = require_file(root / src / "validated.tsv", f"Common Voice v4 transcripts of '{src}'")
        clips = read_clips(validated)
        for tgt, task in jobs:
            pair_file = pairs[src][tgt]
            for lineno, split, translation, clip in read_pair(pair_file, clips, validated):
                if task != "asr":
                    nonblank(translation, pair_file, lineno, "translation")
                speaker = speaker_of(clip["client_id"])
                audio = clip_file(root / src, clip["path"])
                text = clip["sentence"] if task == "asr" else translation
                utt = Utterance(
                    f"{speaker}-{audio.stem}-{task}", speaker, lang, task, text, clip["sentence"], str(audio)
                )
                splits.setdefault(split, []).append(utt)
    selection.check_found(splits, str(root))
    return write_splits(out, splits, "covost2", set(SPLIT_OF.values()))
