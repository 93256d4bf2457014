"""Kaldi-style S2T data directories: one writer and one validator for every importer.

A data directory holds, sorted by utterance id and mutually consistent:

* ``wav.scp``   ``<utt> <audio path>``, or ``<recording> <audio path>`` with ``segments``
* ``segments``  ``<utt> <recording> <start_s> <end_s>`` (only for long recordings)
* ``text``      ``<utt> <lang><task><notimestamps> <target text>`` (the OWSM format)
* ``text.prev`` ``<utt> <na>`` (no previous-sentence context)
* ``text.ctc``  ``<utt> <source transcript>`` (the CTC target, also for ST)
* ``utt2spk``, ``spk2utt``, ``utt2lang``, ``utt2task``
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from espnet_gated.data.symbols import CONTEXT, LANG, PREFIX, TASK
from espnet_gated.utils import PathLike, read_kaldi_map, replace_dir, umask

KEYED_FILES = ("text", "text.prev", "text.ctc", "utt2spk", "utt2lang", "utt2task")


@dataclass
class Utterance:
    """One utterance of a data directory.

    ``audio`` is the audio file of the utterance, or of its recording when ``start`` and
    ``end`` (seconds) cut a segment out of it; ``recording`` names that recording.
    """

    utt_id: str
    speaker: str
    lang: str  # ISO-639-3 code of the spoken language (OWSM token without brackets)
    task: str  # "asr" or "st_<iso-639-3 target>"
    text: str  # target: transcript (asr) or translation (st)
    text_ctc: str  # transcript of the speech
    audio: str
    recording: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None

    def check(self) -> None:
        """Raise ValueError naming the utterance and the bad field."""
        where = f"utterance '{self.utt_id}'"
        if not self.utt_id or any(c.isspace() for c in self.utt_id):
            raise ValueError(f"{where}: utterance ids must be non-empty and contain no whitespace")
        if not self.speaker or any(c.isspace() for c in self.speaker):
            raise ValueError(f"{where}: speaker '{self.speaker}' must be non-empty without whitespace")
        if not LANG.match(self.lang):
            raise ValueError(f"{where}: language '{self.lang}' is not an ISO-639-3 code like 'deu'")
        if not TASK.match(self.task):
            raise ValueError(f"{where}: task '{self.task}' must be 'asr' or 'st_<lang>' like 'st_eng'")
        for name in ("text", "text_ctc"):
            value = getattr(self, name)
            if not value.strip():
                raise ValueError(f"{where}: empty {name}")
            if "\n" in value:
                raise ValueError(f"{where}: {name} contains a line break")
        if (self.start is None) != (self.end is None):
            raise ValueError(f"{where}: a segment needs both start and end")
        if self.start is not None:
            if not self.recording:
                raise ValueError(f"{where}: a segment needs its recording id")
            if not 0 <= self.start < self.end:
                raise ValueError(f"{where}: bad segment times {self.start}..{self.end}")


def _clean(text: str) -> str:
    return " ".join(text.split())


def write_data_dir(
    out_dir: PathLike,
    utterances: Iterable[Utterance],
    extra_files: Optional[Dict[str, Dict[str, str]]] = None,
    other_files: Optional[Dict[str, str]] = None,
) -> int:
    """Validate every utterance, then write the directory atomically.

    The files are written into a temporary directory next to ``out_dir`` which then
    replaces it, so on any error nothing is written and an old directory survives.
    ``extra_files`` adds per-utterance files such as ``{"utt2num_samples": {utt: "16000"}}``;
    ``other_files`` adds files by name and content (e.g. a report).
    Returns the number of utterances.
    """
    utts = sorted(utterances, key=lambda u: u.utt_id)
    seen, recordings = set(), {}
    for u in utts:
        u.check()
        if u.utt_id in seen:
            raise ValueError(f"duplicate utterance id '{u.utt_id}'")
        seen.add(u.utt_id)
        if u.recording is not None:
            if recordings.setdefault(u.recording, u.audio) != u.audio:
                raise ValueError(f"recording '{u.recording}' points to two audio files")
    if not utts:
        raise ValueError(f"no utterances to write to {out_dir}")
    segmented = [u.start is not None for u in utts]
    if any(segmented) and not all(segmented):
        raise ValueError(f"{out_dir}: either every utterance is a segment or none is")

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it private
        lines: Dict[str, List[str]] = {name: [] for name in KEYED_FILES}
        for u in utts:
            lines["text"].append(f"{u.utt_id} <{u.lang}><{u.task}><notimestamps> {_clean(u.text)}")
            lines["text.prev"].append(f"{u.utt_id} <na>")
            lines["text.ctc"].append(f"{u.utt_id} {_clean(u.text_ctc)}")
            lines["utt2spk"].append(f"{u.utt_id} {u.speaker}")
            lines["utt2lang"].append(f"{u.utt_id} {u.lang}")
            lines["utt2task"].append(f"{u.utt_id} {u.task}")
        if all(segmented):
            lines["wav.scp"] = [f"{rec} {audio}" for rec, audio in sorted(recordings.items())]
            lines["segments"] = [f"{u.utt_id} {u.recording} {u.start:.3f} {u.end:.3f}" for u in utts]
        else:
            lines["wav.scp"] = [f"{u.utt_id} {u.audio}" for u in utts]
        spk2utt: Dict[str, List[str]] = {}
        for u in utts:
            spk2utt.setdefault(u.speaker, []).append(u.utt_id)
        lines["spk2utt"] = [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())]
        for name, values in (extra_files or {}).items():
            if set(values) != seen:
                raise ValueError(f"{out_dir}: {name} must have one entry per utterance")
            lines[name] = [f"{utt} {values[utt]}" for utt in sorted(values)]
        for name, content in lines.items():
            (tmp / name).write_text("".join(line + "\n" for line in content), encoding="utf-8")
        for name, text in (other_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(utts)


def read_entries(path: Path) -> Iterator[Tuple[int, str, str]]:
    """(line number, key, value) of the non-blank lines of a Kaldi-style file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.strip():
                key, _, value = line.partition(" ")
                yield lineno, key, value


def validate_data_dir(data_dir: PathLike, check_audio: bool = False) -> int:
    """Check a data directory; raise ValueError naming the file, line and problem.

    Returns the number of utterances.
    """
    data_dir = Path(data_dir)
    for name in ("wav.scp", "text"):
        if not (data_dir / name).is_file():
            raise ValueError(f"{data_dir / name}: missing")
    maps = {
        name: read_kaldi_map(data_dir / name)
        for name in KEYED_FILES + ("wav.scp", "segments")
        if (data_dir / name).is_file()
    }
    utt_ids = list(maps["text"])
    if not utt_ids:
        raise ValueError(f"{data_dir / 'text'}: no utterances")
    if utt_ids != sorted(utt_ids):
        raise ValueError(f"{data_dir / 'text'}: not sorted by utterance id")
    for name, m in maps.items():
        if name in ("wav.scp",) and "segments" in maps:
            continue
        if set(m) != set(utt_ids):
            extra = sorted(set(m) - set(utt_ids))
            missing = sorted(set(utt_ids) - set(m))
            raise ValueError(
                f"{data_dir / name}: utterances differ from {data_dir / 'text'} "
                f"(only here: {extra[:3]}, missing here: {missing[:3]})"
            )
    for lineno, key, value in read_entries(data_dir / "text"):
        if not PREFIX.match(value) or not PREFIX.sub("", value).strip():
            raise ValueError(
                f"{data_dir / 'text'}:{lineno}: utterance '{key}' must read "
                f"'<lang><task><notimestamps> text' with a non-empty text, got '{value[:60]}'"
            )
    for name, hint in (("text.ctc", "the transcript"), ("text.prev", "'<na>' when there is no previous text")):
        if name in maps:
            for lineno, key, value in read_entries(data_dir / name):
                if not value.strip():
                    raise ValueError(f"{data_dir / name}:{lineno}: utterance '{key}' is empty (want {hint})")
    for lineno, key, value in read_entries(data_dir / "wav.scp"):
        if not value.strip():
            raise ValueError(f"{data_dir / 'wav.scp'}:{lineno}: '{key}' has no audio path")
    if "segments" in maps:
        for lineno, utt, value in read_entries(data_dir / "segments"):
            fields = value.split()
            try:
                ok = len(fields) == 3 and fields[0] in maps["wav.scp"] and 0 <= float(fields[1]) < float(fields[2])
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{data_dir / 'segments'}:{lineno}: utterance '{utt}': bad entry '{value}' "
                    "(want '<recording in wav.scp> <start_s> <end_s>' with start < end)"
                )
    if check_audio:
        for key, path in maps["wav.scp"].items():
            if not Path(path).is_file():
                raise ValueError(f"{data_dir / 'wav.scp'}: '{key}': audio file {path} does not exist")
    return len(utt_ids)


def check_context_tokens(text_path: PathLike, token_list: Sequence[str], where: str = "the token list") -> int:
    """Check that every ``<lang><task>`` prefix of a ``text`` file is in ``token_list``.

    Raises ValueError naming the file, the first line and utterance of each missing token
    (a language or task the vocabulary was not built for would otherwise be split into
    sentencepiece pieces and fail deep inside training or decoding). Returns the number
    of lines checked.
    """
    vocab = set(token_list)
    missing: Dict[str, Tuple[int, str, int]] = {}  # token -> (first line, utterance, count)
    n = 0
    for lineno, key, value in read_entries(Path(text_path)):
        n += 1
        m = CONTEXT.match(value)
        if m is None:
            raise ValueError(
                f"{text_path}:{lineno}: utterance '{key}' does not start with <lang><task>: {value[:60]!r}"
            )
        for token in m.groups():
            if token not in vocab:
                first = missing.get(token, (lineno, key, 0))
                missing[token] = (first[0], first[1], first[2] + 1)
    if missing:
        details = "; ".join(
            f"{tok} ({count} utterance(s), first {text_path}:{line} '{utt}')"
            for tok, (line, utt, count) in sorted(missing.items())
        )
        raise ValueError(
            f"{text_path}: language/task token(s) not in {where}: {details}. Rebuild the token list "
            "with these languages (make_tokens --extra_langs) or drop them (subset_data --langs/--tasks)"
        )
    return n


def read_data_dir(data_dir: PathLike) -> List[Utterance]:
    """Utterances of a data directory written by :func:`write_data_dir`."""
    data_dir = Path(data_dir)
    validate_data_dir(data_dir)
    text = read_kaldi_map(data_dir / "text")
    ctc = read_kaldi_map(data_dir / "text.ctc")
    spk = read_kaldi_map(data_dir / "utt2spk")
    wav = read_kaldi_map(data_dir / "wav.scp")
    segments = read_kaldi_map(data_dir / "segments") if (data_dir / "segments").exists() else {}
    out = []
    for utt, value in text.items():
        lang, task = PREFIX.match(value).groups()
        u = Utterance(utt, spk[utt], lang, task, PREFIX.sub("", value), ctc[utt], wav.get(utt, ""))
        if utt in segments:
            rec, start, end = segments[utt].split()
            u.recording, u.start, u.end, u.audio = rec, float(start), float(end), wav[rec]
        out.append(u)
    return out
