"""Common Voice (ASR): one ``DATA_DIR/<split>/`` per split with every selected locale.

Layout read (one directory per locale, as in ``cv-corpus-*/``)::

    <root>/<locale>/clips/<clip>.mp3
    <root>/<locale>/{train,dev,test}.tsv    header row, then one clip per line

The columns changed across releases (``sentence_id``, ``accents``, ``variant``, ...), so they
are read by header name; only ``client_id``, ``path`` and ``sentence`` are needed. Fields are
read verbatim (quotes and the word "NA" are text). Paths of old releases lack ``.mp3``.
The speaker is the ``client_id`` (its first 16 hex digits keep ids readable); the audio stays
mp3 (the recipe's format stage decodes it). Locales map to ISO-639-3 via
:mod:`espnet_gated.data.langs` (``zh-CN`` -> ``zho``, ``zh-HK`` -> ``yue``).

Usage::

    python -m espnet_gated.bin.prepare common_voice --root /corpora/cv-corpus-17.0-2024-03-15 \\
        --out data/common_voice --langs deu,fr,zh-CN

    from espnet_gated.importers import prepare_common_voice
    counts = prepare_common_voice("/corpora/cv-corpus-17.0-2024-03-15", "data/common_voice", langs=["deu"])
"""

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_gated.data.datadir import Utterance
from espnet_gated.data.langs import to_iso3
from espnet_gated.importers.common import CorpusError, Selection, absolute, nonblank, read_tsv, write_splits
from espnet_gated.utils import PathLike

SPLITS = ("train", "dev", "test")
COLUMNS = ("client_id", "path", "sentence")


def clip_file(locale_dir: Path, path: str) -> Path:
    return locale_dir / "clips" / (path if Path(path).suffix else f"{path}.mp3")


def speaker_of(client_id: str) -> str:
    return f"cv-{client_id[:16]}"


def read_clips(tsv: Path) -> Dict[str, Tuple[int, Dict[str, str]]]:
    """``path`` -> (line, row) of a Common Voice TSV; a clip listed twice is an error."""
    clips: Dict[str, Tuple[int, Dict[str, str]]] = {}
    for lineno, row in read_tsv(tsv, COLUMNS):
        if row["path"] in clips:
            raise CorpusError(f"{tsv}:{lineno}: clip '{row['path']}' already listed on line {clips[row['path']][0]}")
        if not row["client_id"].strip():
            raise CorpusError(f"{tsv}:{lineno}: empty client_id")
        nonblank(row["sentence"], tsv, lineno, "sentence")
        clips[row["path"]] = (lineno, row)
    return clips


def prepare_common_voice(
    root: PathLike, out: PathLike, langs: Optional[Iterable[str]] = None, tasks: Optional[Iterable[str]] = None
) -> Dict[str, int]:
    """Write ``out/{train,dev,test}/`` (the splits present) for the selected locales; returns the counts."""
    selection = Selection(langs, tasks)
    root = absolute(root)
    if any(task != "asr" for task in selection.tasks or ()):
        raise CorpusError(f"Common Voice has only the asr task, not {', '.join(selection.tasks)}")
    found = (
        [d.name for d in sorted(root.iterdir()) if any((d / f"{s}.tsv").is_file() for s in SPLITS)]
        if root.is_dir()
        else []
    )
    if not found:
        raise CorpusError(f"{root}: no <locale>/train.tsv, dev.tsv or test.tsv: pass the cv-corpus-* directory")
    splits: Dict[str, List[Utterance]] = {}
    for locale in selection.pick(found, f"{root}: Common Voice locales"):
        lang = to_iso3(locale)
        for split in SPLITS:
            tsv = root / locale / f"{split}.tsv"
            if not tsv.is_file():
                continue
            for _, row in read_clips(tsv).values():
                speaker = speaker_of(row["client_id"])
                audio = clip_file(root / locale, row["path"])
                text = row["sentence"]
                utt = Utterance(f"{speaker}-{audio.stem}-asr", speaker, lang, "asr", text, text, str(audio))
                splits.setdefault(split, []).append(utt)
    selection.check_found(splits, str(root))
    return write_splits(out, splits, "common_voice", SPLITS)
