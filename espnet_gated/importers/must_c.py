"""MuST-C: English TED talks with transcripts and translations (en ASR, en->X ST).

Layout read (v1 to v3)::

    <root>/en-<tgt>/data/<split>/wav/ted_<talk>.wav     one recording per talk
    <root>/en-<tgt>/data/<split>/txt/<split>.yaml       - {duration: 3.5, offset: 16.08, rW: 9, uW: 0,
                                                          speaker_id: spk.767, wav: ted_767.wav}
    <root>/en-<tgt>/data/<split>/txt/<split>.en         transcript, line-aligned with the yaml items
    <root>/en-<tgt>/data/<split>/txt/<split>.<tgt>      translation, line-aligned

Splits: train, dev, tst-COMMON, tst-HE (those present). The yaml items and both text files
must agree in number, otherwise the call fails naming them. Utterances are segments of
the talk wavs; each pair has its own copy of a talk, so recordings are
``mustc-en-<tgt>-ted_<talk>``; the speaker is ``mustc-<speaker_id>``.

Tasks: ``st_<tgt>`` from each pair; ``asr`` from one pair only (every pair repeats the same
English talks): ``asr_pair``, by default en-de (MuST-C's original pair) or else the
alphabetically first.

Usage::

    python -m espnet_gated.bin.prepare must_c --root /corpora/MUST-C --out data/must_c --tasks asr,st_deu,st_fra \\
        [--asr_pair de]

    from espnet_gated.importers import prepare_must_c
    counts = prepare_must_c("/corpora/MUST-C", "data/must_c", tasks=["asr", "st_deu"])
"""

from pathlib import Path
from typing import Dict, Iterable, List, Optional

import yaml

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

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
#: the C loader reads a 250k-item train yaml in seconds instead of minutes
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_list(path: Path) -> list:
    try:
        with open(require_file(path, "MuST-C segment list"), encoding="utf-8") as f:
            items = yaml.load(f, Loader=YAML_LOADER)
    except yaml.YAMLError as e:
        raise CorpusError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(items, list):
        raise CorpusError(f"{path}: expected a list of segments, got {type(items).__name__}")
    return items


def read_split(split_dir: Path, tgt: str, translated: bool = True) -> List[Segment]:
    """The segments of ``en-<tgt>/data/<split>`` (translations checked only when ``translated``)."""
    txt = split_dir / "txt"
    files = [txt / f"{split_dir.name}.yaml", txt / f"{split_dir.name}.en", txt / f"{split_dir.name}.{tgt}"]
    items = load_yaml_list(files[0])
    transcripts, translations = (read_lines(require_file(path, "MuST-C text")) for path in files[1:])
    counts = [len(items), len(transcripts), len(translations)]
    if len(set(counts)) > 1:
        listing = ", ".join(f"{path.name} {n}" for path, n in zip(files, counts, strict=True))
        raise CorpusError(f"{txt}: segment counts differ ({listing}); refusing the split")
    segments = []
    for i, (item, transcript, translation) in enumerate(zip(items, transcripts, translations, strict=True), 1):
        try:
            wav, speaker = str(item["wav"]), str(item["speaker_id"])
            start, duration = float(item["offset"]), float(item["duration"])
        except (TypeError, KeyError, ValueError):
            raise CorpusError(
                f"{files[0]}: item {i}: expected {{duration, offset, speaker_id, wav}}, got {item}"
            ) from None
        if start < 0 or duration <= 0:
            raise CorpusError(f"{files[0]}: item {i}: bad offset {start} or duration {duration}")
        nonblank(transcript, files[1], i, "transcript")
        if translated:
            nonblank(translation, files[2], i, "translation")
        recording, audio = f"mustc-en-{tgt}-{Path(wav).stem}", str(split_dir / "wav" / wav)
        segments.append(Segment(f"mustc-{speaker}", recording, audio, start, start + duration, transcript, translation))
    return segments


def prepare_must_c(
    root: PathLike,
    out: PathLike,
    langs: Optional[Iterable[str]] = None,
    tasks: Optional[Iterable[str]] = None,
    asr_pair: Optional[str] = None,
) -> Dict[str, int]:
    """Write ``out/<split>/`` for the splits present; returns the counts. ``langs`` may only
    select English (the speech of MuST-C); ``asr_pair`` is a target code (``de``, ``deu``)."""
    selection = Selection(langs, tasks)
    root = absolute(root)
    targets = [d.name[3:] for d in sorted(root.glob("en-*")) if (d / "data").is_dir()]
    if not targets:
        raise CorpusError(f"{root}: no en-<tgt>/data/ directories: pass the MuST-C root")
    selection.pick(["en"], f"{root}: MuST-C speech")  # any other requested language is an error
    if asr_pair is None:
        asr_pair = preferred(targets, "de")
    else:
        matching = [tgt for tgt in targets if tgt == asr_pair or to_iso3(tgt) == to_iso3(asr_pair)]
        if not matching:
            raise CorpusError(f"{root}: no en-{asr_pair}/ for the ASR data (found: {', '.join(targets)})")
        asr_pair = matching[0]
    splits: Dict[str, List[Utterance]] = {}
    for tgt in targets:
        wanted = [f"st_{to_iso3(tgt)}"] + (["asr"] if tgt == asr_pair else [])
        wanted = [task for task in wanted if selection.wants(task)]
        for split in SPLITS if wanted else ():
            split_dir = root / f"en-{tgt}" / "data" / split
            if not split_dir.is_dir():
                continue
            for seg in read_split(split_dir, tgt, translated=wanted != ["asr"]):
                talk = Path(seg.audio).stem
                splits.setdefault(split, []).extend(seg.utterances(f"{seg.speaker}-{talk}", "eng", wanted))
    selection.check_found(splits, str(root))
    return write_splits(out, splits, "must_c", SPLITS)
