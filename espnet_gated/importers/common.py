"""What every corpus importer shares: the error type, strict readers, the language/task
selection, and the all-or-nothing writer of ``DATA_DIR/<split>/``."""

import csv
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from espnet_gated.data.datadir import Utterance, write_data_dir
from espnet_gated.data.langs import normalize_code, to_iso3
from espnet_gated.data.symbols import TASK
from espnet_gated.utils import PathLike, replace_dir


class CorpusError(ValueError):
    """Bad or missing corpus input; the message names the file (and line) and the problem."""


def absolute(path: PathLike) -> Path:
    """Absolute path without resolving symlinks (corpora are often linked in)."""
    return Path(os.path.abspath(path))


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CorpusError(f"{path}: missing ({what})")
    return path


def read_lines(path: Path) -> List[str]:
    """Lines split at ``\\n`` only, so a stray ``\\r`` or U+2028 inside a sentence cannot shift
    line-aligned files against each other; a final ``\\r`` (CRLF files) is dropped."""
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            content = f.read()
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 ({e})") from None
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def nonblank(text: str, path: Path, lineno: int, what: str) -> str:
    if not text.strip():
        raise CorpusError(f"{path}:{lineno}: empty {what}")
    return text


def _tsv_records(path: Path) -> Iterable[Tuple[int, List[str]]]:
    """(line number, fields) of a tab-separated file read verbatim: no quoting (quotes are text)
    and no NA filtering (the word "NA" is text); blank lines are skipped."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 ({e})") from None
    except csv.Error as e:
        raise CorpusError(f"{path}: unreadable TSV ({e})") from None


def read_tsv(path: Path, required: Sequence[str]) -> List[Tuple[int, Dict[str, str]]]:
    """Rows of a TSV with a header, by column name (column order differs across releases)."""
    records = _tsv_records(require_file(path, "TSV file"))
    _, header = next(records, (0, []))
    missing = [name for name in required if name not in header]
    if missing:
        raise CorpusError(f"{path}:1: header lacks column(s) {', '.join(missing)} (header: {' '.join(header)})")
    rows = []
    for lineno, fields in records:
        if len(fields) != len(header):
            raise CorpusError(f"{path}:{lineno}: {len(fields)} tab-separated fields, the header has {len(header)}")
        rows.append((lineno, dict(zip(header, fields, strict=True))))
    return rows


def read_headerless_tsv(path: Path, n_columns: int) -> List[Tuple[int, List[str]]]:
    rows = []
    for lineno, fields in _tsv_records(require_file(path, "TSV file")):
        if len(fields) != n_columns:
            raise CorpusError(f"{path}:{lineno}: {len(fields)} tab-separated fields, expected {n_columns}")
        rows.append((lineno, fields))
    return rows


def parse_task(task: str) -> str:
    """``asr``, or ``st_<code>`` with any code :func:`to_iso3` knows (``st_en`` -> ``st_eng``)."""
    task = task.strip().strip("<>").lower()
    if task.startswith("st_"):
        try:
            task = f"st_{to_iso3(task[3:])}"
        except ValueError as e:
            raise CorpusError(f"task '{task}': {e}") from None
    if not TASK.match(task):
        raise CorpusError(f"unknown task '{task}': expected asr or st_<lang> like st_eng")
    return task


def preferred(codes: Iterable[str], *first: str) -> str:
    """The first of ``first`` among ``codes``, else the alphabetically first code: a fixed
    choice of the one pair that gives a source language's ASR data (no duplicate ASR utterances)."""
    codes = sorted(codes)
    return next((code for code in first if code in codes), codes[0])


def ms(seconds: float) -> str:
    """Fixed-width milliseconds for utterance ids, so ids sort by time."""
    return f"{round(seconds * 1000):08d}"


@dataclass
class Segment:
    """A stretch of a long recording (Europarl-ST, MuST-C) with its transcript and translation."""

    speaker: str
    recording: str
    audio: str
    start: float
    end: float
    transcript: str
    translation: str

    def utterances(self, utt_prefix: str, lang: str, tasks: Iterable[str]) -> List[Utterance]:
        """One per task, ``<utt_prefix>-<start ms>-<end ms>-<task>``: the transcript is the
        target of asr, the translation that of st."""
        return [
            Utterance(
                f"{utt_prefix}-{ms(self.start)}-{ms(self.end)}-{task}",
                self.speaker,
                lang,
                task,
                self.transcript if task == "asr" else self.translation,
                self.transcript,
                self.audio,
                self.recording,
                self.start,
                self.end,
            )
            for task in tasks
        ]


def _language_of(code: str) -> Optional[str]:
    """ISO-639-3 of a corpus code, None for codes the table lacks (they only fail when used)."""
    try:
        return to_iso3(code)
    except ValueError:
        return None


class Selection:
    """The languages (spoken) and tasks a call asks for; ``None`` means all the corpus has
    (``default_tasks`` where all would be too much, like FLEURS' every-pair ST)."""

    def __init__(
        self,
        langs: Optional[Iterable[str]],
        tasks: Optional[Iterable[str]],
        default_tasks: Optional[Iterable[str]] = None,
    ):
        self.langs = None if langs is None else sorted({normalize_code(code) for code in langs})
        for code in self.langs or ():
            to_iso3(code)
        tasks = default_tasks if tasks is None else tasks
        self.tasks = None if tasks is None else sorted({parse_task(task) for task in tasks})

    def pick(self, codes: Iterable[str], what: str) -> List[str]:
        """The corpus codes selected by ``langs``: a requested code that is one of the corpus's
        own picks exactly that one (``zh-TW``), any other picks all codes of its language (``zho``)."""
        codes = sorted(set(codes))
        if self.langs is None:
            return codes
        by_code = {normalize_code(code): code for code in codes}
        picked = set()
        for requested in self.langs:
            if requested in by_code:
                picked.add(by_code[requested])
                continue
            same_language = [code for code in codes if _language_of(code) == to_iso3(requested)]
            if not same_language:
                raise CorpusError(f"{what}: no language '{requested}' (found: {', '.join(codes) or 'none'})")
            picked.update(same_language)
        return sorted(picked)

    def wants(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def check_found(self, splits: Dict[str, List[Utterance]], where: str) -> None:
        """Every requested task produced data (a typo or a missing pair is an error, not an empty set)."""
        found = {u.task for utts in splits.values() for u in utts}
        if not found:
            raise CorpusError(f"{where}: nothing selected (langs={self.langs}, tasks={self.tasks})")
        missing = sorted(set(self.tasks or ()) - found)
        if missing:
            raise CorpusError(f"{where}: no data for task(s) {', '.join(missing)} (found: {', '.join(sorted(found))})")


def require_audio(utterances: Iterable[Utterance]) -> None:
    """Every referenced audio file exists (checked before anything is written)."""
    missing = sorted({u.audio for u in utterances if not os.path.isfile(u.audio)})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CorpusError(f"{missing[0]}: audio file missing{more}")


def write_splits(
    out: PathLike, splits: Dict[str, List[Utterance]], corpus: str, corpus_splits: Iterable[str]
) -> Dict[str, int]:
    """Write ``out/<split>/`` for every split, all or nothing: each split is written (and
    validated) into a staging directory first, and only when all succeeded are they moved into
    place, so a bad split cannot leave the others of the same call updated. A data dir of one of
    ``corpus_splits`` that this call has no data for is left from an earlier call with another
    selection, and is removed so that it cannot mix into this one. Returns the counts."""
    require_audio(u for utts in splits.values() for u in utts)
    out = absolute(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
    try:
        counts = {name: write_data_dir(staging / name, utts) for name, utts in sorted(splits.items())}
        for name in counts:
            replace_dir(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name in sorted(set(corpus_splits) - set(counts)):
        if (out / name / "text").is_file():
            logging.info(f"{corpus}: removing {out / name}: this selection has no {name} data")
            shutil.rmtree(out / name)
    for name, utts in sorted(splits.items()):
        by_context = Counter((u.lang, u.task) for u in utts)
        detail = ", ".join(f"{lang} {task} {n}" for (lang, task), n in sorted(by_context.items()))
        logging.info(f"{corpus}: {out / name}: {counts[name]} utterances ({detail})")
    return counts
