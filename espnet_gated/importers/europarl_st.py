"""Europarl-ST (the paper's data): ASR and X->Y speech translation of parliament speeches.

Layout read (v1.1, https://www.mllp.upv.es/europarl-st/)::

    <root>/<src>/audios/<speech_id>.m4a               one recording per speech
    <root>/<src>/<tgt>/<split>/segments.lst           <speech_id> <start_s> <end_s>
    <root>/<src>/<tgt>/<split>/segments.<src>         transcript, line-aligned with segments.lst
    <root>/<src>/<tgt>/<split>/segments.<tgt>         translation, line-aligned

Splits are train, dev and test. The three files of a split must have the same number of
lines, otherwise the call fails naming them and their counts (a shifted line would pair
speech with the wrong text). Utterances are segments of the m4a recordings (``segments``);
decoding and cutting is the recipe's format stage.

Where ASR comes from: every ``<src>/<tgt>`` pair repeats (parts of) the same source speech,
so ASR utterances come from one pair per source language: ``<src>/<src>`` if a
transcript-only pair exists, else ``<src>/en``, else the alphabetically first pair. ST
``st_<tgt>`` comes from each ``<src>/<tgt>`` with ``tgt != src``. A speech is one speaker,
so speaker and recording are ``epst-<src>-<speech_id>``; utterance ids add the times in
ms and the task: ``epst-de-<speech_id>-00012340-00015670-st_eng``.

Usage::

    python -m espnet_gated.bin.prepare europarl_st --root /corpora/europarl-st/v1.1 --out data/europarl_st \\
        --langs deu,fra,ita --tasks asr,st_eng

    from espnet_gated.importers import prepare_europarl_st
    counts = prepare_europarl_st("/corpora/europarl-st/v1.1", "data/europarl_st", ["de", "fr", "it"], ["asr", "st_eng"])
"""

from pathlib import Path
from typing import Dict, Iterable, List, Optional

from espnet_gated.data.datadir import Utterance
from espnet_gated.data.langs import to_iso3
from espnet_gated.importers.common import (
    CorpusError,
    Segment,
    Selection,
    absolute,
    nonblank,
    preferred,
    read_lines,
    require_file,
    write_splits,
)
from espnet_gated.utils import PathLike

SPLITS = ("train", "dev", "test")


def read_split(split_dir: Path, src: str, tgt: str, translated: bool = True) -> List[Segment]:
    """The segments of ``<root>/<src>/<tgt>/<split>``, checked line by line (the translations
    only when ``translated``: a pair read for its ASR transcripts alone needs none)."""
    files = [split_dir / "segments.lst", split_dir / f"segments.{src}", split_dir / f"segments.{tgt}"]
    columns = [read_lines(require_file(path, "Europarl-ST segment file")) for path in files]
    counts = [len(lines) for lines in columns]
    if len(set(counts)) > 1:
        listing = ", ".join(f"{path.name} {n}" for path, n in zip(files, counts, strict=True))
        raise CorpusError(f"{split_dir}: line counts differ ({listing}); refusing the split")
    segments = []
    for lineno, (line, transcript, translation) in enumerate(zip(*columns, strict=True), 1):
        fields = line.split()
        try:
            speech_id, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            start = end = -1.0
        if len(fields) != 3 or not 0 <= start < end:
            raise CorpusError(
                f"{files[0]}:{lineno}: expected '<speech_id> <start_s> <end_s>' with start < end, got '{line}'"
            )
        nonblank(transcript, files[1], lineno, "transcript")
        if translated:
            nonblank(translation, files[2], lineno, "translation")
        recording = f"epst-{src}-{speech_id}"
        audio = split_dir.parents[1] / "audios" / f"{speech_id}.m4a"
        segments.append(Segment(recording, recording, str(audio), start, end, transcript, translation))
    return segments


def prepare_europarl_st(
    root: PathLike, out: PathLike, langs: Optional[Iterable[str]] = None, tasks: Optional[Iterable[str]] = None
) -> Dict[str, int]:
    """Write ``out/{train,dev,test}/`` with the selected source languages and tasks; returns the counts."""
    selection = Selection(langs, tasks)
    root = absolute(root)
    sources = [d.name for d in sorted(root.iterdir()) if (d / "audios").is_dir()] if root.is_dir() else []
    if not sources:
        raise CorpusError(f"{root}: no <src>/audios/ directories: pass the Europarl-ST root (e.g. v1.1/)")
    splits: Dict[str, List[Utterance]] = {}
    for src in selection.pick(sources, f"{root}: Europarl-ST source languages"):
        lang = to_iso3(src)
        targets = [d.name for d in sorted((root / src).iterdir()) if any((d / s).is_dir() for s in SPLITS)]
        if not targets:
            continue
        asr_pair = preferred(targets, src, "en")
        for tgt in targets:
            wanted = ([f"st_{to_iso3(tgt)}"] if tgt != src else []) + (["asr"] if tgt == asr_pair else [])
            wanted = [task for task in wanted if selection.wants(task)]
            for split in SPLITS if wanted else ():
                split_dir = root / src / tgt / split
                if not split_dir.is_dir():
                    continue
                for seg in read_split(split_dir, src, tgt, translated=wanted != ["asr"]):
                    splits.setdefault(split, []).extend(seg.utterances(seg.recording, lang, wanted))
    selection.check_found(splits, str(root))
    return write_splits(out, splits, "europarl_st", SPLITS)
