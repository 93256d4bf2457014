"""FLEURS (Hugging Face ``google/fleurs`` layout): ASR in 102 languages, ST by joining languages.

Layout read::

    <root>/data/<config>/{train,dev,test}.tsv        no header; 7 tab-separated columns:
        id  file_name  raw_transcription  transcription  characters  num_samples  gender
    <root>/data/<config>/audio/{train,dev,test}.tar.gz   the wavs, matched by basename
    <root>/data/<config>/audio/{train,dev,test}/          or the same, already extracted

``<config>`` is e.g. ``de_de``, ``cmn_hans_cn``; it maps to ISO-639-3 via
:mod:`espnet_gated.data.langs`. The targets are the cased, punctuated ``raw_transcription``.
The wavs a call needs are put once into ``<out>/audio/fleurs/<config>/<split>/`` (files
already there are kept), and wav.scp points there: extracted from the archive, or, where
``audio/<split>/`` holds them already extracted (found by basename, at any depth), linked
to those files (a symbolic link, no copy). Either way the data directory is the same.

ST: FLEURS has no translations, but ``id`` is the FLoRes sentence id shared by all
languages, so ``st_<lang>`` gives each recording the ``raw_transcription`` of the same
sentence in the target language's TSV of the same split (no cross-split leakage). Several
speakers read the same sentence, so ids repeat: every recording gets the translation once
(the target's first row of that id), pairs are not multiplied. ST is opt-in: the default
tasks are ``asr`` only (all language pairs would be 101 times the data).

FLEURS has no speaker ids, so each recording is its own speaker ``fleurs-<config>-<file>``;
utterance ids add the task: ``fleurs-de_de-1234567-st_eng``.

Usage::

    python -m espnet_gated.bin.prepare fleurs --root /corpora/fleurs --out data/fleurs \\
        --langs deu,fra,ita,cmn_hans_cn --tasks asr,st_eng

    from espnet_gated.importers import prepare_fleurs
    counts = prepare_fleurs("/corpora/fleurs", "data/fleurs", langs=["de_de"], tasks=["asr", "st_eng"])
"""

import os
import shutil
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_gated.data.datadir import Utterance
from espnet_gated.data.langs import to_iso3
from espnet_gated.importers.common import (
    CorpusError,
    Selection,
    absolute,
    nonblank,
    read_headerless_tsv,
    write_splits,
)
from espnet_gated.utils import PathLike

SPLITS = ("train", "dev", "test")
N_COLUMNS = 7


@dataclass
class Recording:
    sentence_id: str
    file_name: str
    text: str  # raw_transcription


def read_split(tsv: Path) -> List[Recording]:
    recordings, seen = [], {}
    for lineno, fields in read_headerless_tsv(tsv, N_COLUMNS):
        sentence_id, file_name, text = fields[0].strip(), fields[1].strip(), fields[2]
        if not sentence_id or not file_name or PurePosixPath(file_name).name != file_name:
            raise CorpusError(
                f"{tsv}:{lineno}: expected a sentence id and a wav file name, got '{fields[0]}', '{fields[1]}'"
            )
        if file_name in seen:
            raise CorpusError(f"{tsv}:{lineno}: '{file_name}' already listed on line {seen[file_name]}")
        seen[file_name] = lineno
        recordings.append(Recording(sentence_id, file_name, nonblank(text, tsv, lineno, "raw_transcription")))
    return recordings


def extracted_wavs(folder: Path) -> Dict[str, Path]:
    """Basename -> file of the already extracted audio under ``folder`` (none if it is absent)."""
    found: Dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            if path.name in found:
                raise CorpusError(f"{folder}: {path.name} is there twice ({found[path.name]} and {path})")
            found[path.name] = path
    return found


def link_extracted(found: Dict[str, Path], wanted: Dict[str, Path]) -> Dict[str, Path]:
    """Link each wanted file that is in ``found`` (symbolic link, atomically); returns the rest."""
    rest = {}
    for name, dest in wanted.items():
        if dest.is_file():
            continue
        if name not in found:
            rest[name] = dest
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(found[name].resolve(), tmp)
        os.replace(tmp, dest)
    return rest


def provide_audio(audio_dir: Path, split: str, wanted: Dict[str, Path]) -> None:
    """Put every wanted wav at its path: linked from ``audio/<split>/`` where it is extracted
    there, else extracted from ``audio/<split>.tar.gz``."""
    rest = link_extracted(extracted_wavs(audio_dir / split), wanted)
    tar_path = audio_dir / f"{split}.tar.gz"
    if rest and not tar_path.is_file():
        raise CorpusError(
            f"{tar_path}: missing, and {audio_dir / split}/ does not hold {len(rest)} needed wavs "
            f"(e.g. {sorted(rest)[0]})"
        )
    extract_audio(tar_path, rest)


def extract_audio(tar_path: Path, wanted: Dict[str, Path]) -> None:
    """Extract the members named (by basename) in ``wanted`` to their paths, skipping files
    already there; each file appears under its name only when complete."""
    missing = {name: dest for name, dest in wanted.items() if not dest.is_file()}
    if not missing:
        return
    if not tar_path.is_file():
        raise CorpusError(f"{tar_path}: missing (holds {len(missing)} needed wavs, e.g. {sorted(missing)[0]})")
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                dest = missing.pop(PurePosixPath(member.name).name, None) if member.isfile() else None
                if dest is None:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
                try:
                    with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(tmp, dest)
                finally:
                    tmp.unlink(missing_ok=True)
                if not missing:
                    break
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CorpusError(f"{tar_path}: cannot extract ({e})") from None
    if missing:
        first = sorted(missing)[0]
        raise CorpusError(f"{tar_path}: no member named {first} ({len(missing)} wavs of the TSV are not in it)")


def prepare_fleurs(
    root: PathLike, out: PathLike, langs: Optional[Iterable[str]] = None, tasks: Optional[Iterable[str]] = None
) -> Dict[str, int]:
    """Extract (or link) the needed wavs and write ``out/{train,dev,test}/``; returns the counts."""
    selection = Selection(langs, tasks, default_tasks=["asr"])
    data = absolute(root) / "data"
    configs = (
        [d.name for d in sorted(data.iterdir()) if any((d / f"{s}.tsv").is_file() for s in SPLITS)]
        if data.is_dir()
        else []
    )
    if not configs:
        raise CorpusError(f"{data}: no <config>/train.tsv, dev.tsv or test.tsv: pass the FLEURS root (it holds data/)")
    cache: Dict[Tuple[str, str], List[Recording]] = {}

    def recordings(config: str, split: str) -> List[Recording]:
        if (config, split) not in cache:
            tsv = data / config / f"{split}.tsv"
            cache[config, split] = read_split(tsv) if tsv.is_file() else []
        return cache[config, split]

    def target_config(task: str) -> str:
        lang = task.removeprefix("st_")
        matching = [config for config in configs if to_iso3(config) == lang]
        if len(matching) != 1:
            raise CorpusError(f"{data}: {task} needs one FLEURS config of {lang}, found {matching or 'none'}")
        return matching[0]

    audio_root = absolute(out) / "audio" / "fleurs"
    splits: Dict[str, List[Utterance]] = {}
    audio: Dict[Tuple[str, str], Dict[str, Path]] = defaultdict(dict)
    for config in selection.pick(configs, f"{data}: FLEURS configs"):
        lang = to_iso3(config)
        st_targets = {
            task: target_config(task) for task in selection.tasks if task.startswith("st_") and task != f"st_{lang}"
        }
        for split in SPLITS:
            translations = {}
            for task, target in st_targets.items():
                translations[task] = {}
                for rec in recordings(target, split):
                    translations[task].setdefault(rec.sentence_id, rec.text)
            for rec in recordings(config, split):
                targets = {"asr": rec.text} if selection.wants("asr") else {}
                targets.update(
                    {task: by_id[rec.sentence_id] for task, by_id in translations.items() if rec.sentence_id in by_id}
                )
                if not targets:
                    continue
                wav = audio[config, split].setdefault(rec.file_name, audio_root / config / split / rec.file_name)
                speaker = f"fleurs-{config}-{PurePosixPath(rec.file_name).stem}"
                for task, text in targets.items():
                    splits.setdefault(split, []).append(
                        Utterance(f"{speaker}-{task}", speaker, lang, task, text, rec.text, str(wav))
                    )
    selection.check_found(splits, str(data))
    for (config, split), wanted in sorted(audio.items()):
        provide_audio(data / config / "audio", split, wanted)
    return write_splits(out, splits, "fleurs", SPLITS)
