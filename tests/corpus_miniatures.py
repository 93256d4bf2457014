"""Hand-made miniatures of the real corpus layouts (docs: /work/shared/notes/corpora.md and the
importer docstrings): a few utterances of short 16 kHz audio, headers byte for byte as published.

Each ``make_<corpus>(root)`` builds the tree under ``root`` and returns it; the texts are
module constants so tests can assert on them.
"""

import shutil
import subprocess
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np
import soundfile

FS = 16000
CV_HEADER_V4 = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"
CV_HEADER_V17 = (
    "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\t"
    "age\tgender\taccents\tvariant\tlocale\tsegment"
)
COVOST_HEADER = "path\tsentence\ttranslation\tclient_id\tsplit"


def write_wav(path: Path, seconds: float = 0.5, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * FS)) / FS
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * freq * t), FS, subtype="PCM_16")
    return path


@lru_cache(maxsize=None)
def _encoded(suffix: str, seconds: float, cache_dir: str) -> Path:
    """One ffmpeg encode per format and length per session; the miniatures copy it."""
    wav = write_wav(Path(cache_dir) / f"tone{seconds}.wav", seconds)
    out = wav.with_suffix(suffix)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(out)], check=True)
    return out


def write_encoded(path: Path, cache_dir: Path, seconds: float = 0.5) -> Path:
    """An m4a/mp3 as the corpus ships it (made with ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_encoded(path.suffix, seconds, str(cache_dir)), path)
    return path


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{line}\n" for line in lines)
    return path


# ---------------------------------------------------------------- Europarl-ST
SPEECH_DE1, SPEECH_DE2, SPEECH_FR1 = "de.20090422.22.3-138", "de.20090423.5.2-7", "fr.20101117.11.3-031"
#: (src, tgt, split) -> rows of (speech id, start, end, transcript, translation)
EUROPARL: Dict[Tuple[str, str, str], List[Tuple[str, str, str, str, str]]] = {
    ("de", "en", "train"): [
        (SPEECH_DE1, "0.00", "1.20", "Guten Tag.", "Good day."),
        (SPEECH_DE1, "1.20", "2.50", "Das Haus ist groß.", "The house is big."),
        (SPEECH_DE2, "0.50", "1.80", "Wir stimmen zu.", "We agree."),
    ],
    ("de", "en", "test"): [(SPEECH_DE2, "1.80", "2.90", "Danke schön.", "Thank you.")],
    ("de", "fr", "train"): [
        (SPEECH_DE1, "0.00", "1.20", "Guten Tag.", "Bonjour."),
        (SPEECH_DE2, "0.50", "1.80", "Wir stimmen zu.", "Nous sommes d'accord."),
    ],
    ("fr", "en", "train"): [(SPEECH_FR1, "0.25", "2.00", "Merci, Monsieur le Président.", "Thank you, Mr President.")],
}


def make_europarl_st(root: Path, cache_dir: Path) -> Path:
    for (src, tgt, split), rows in EUROPARL.items():
        split_dir = root / src / tgt / split
        write_lines(split_dir / "segments.lst", [f"{speech} {start} {end}" for speech, start, end, _, _ in rows])
        write_lines(split_dir / f"segments.{src}", [row[3] for row in rows])
        write_lines(split_dir / f"segments.{tgt}", [row[4] for row in rows])
        for speech, *_ in rows:
            write_encoded(root / src / "audios" / f"{speech}.m4a", cache_dir, seconds=3.0)
    return root


# ---------------------------------------------------------------- FLEURS
#: config -> split -> rows of (id, file_name, raw_transcription); ids repeat (several readers)
FLEURS: Dict[str, Dict[str, List[Tuple[str, str, str]]]] = {
    "de_de": {
        "train": [
            ("1001", "10004088536354799741.wav", "Hallo Welt."),
            ("1001", "10015678931254432101.wav", "Hallo Welt."),
            ("1002", "10020001112223334445.wav", "Guten Morgen."),
        ],
        "test": [("1003", "10030009998887776665.wav", "Auf Wiedersehen.")],
    },
    "en_us": {
        "train": [
            ("1001", "20001.wav", "Hello world."),
            ("1001", "20002.wav", "Hello, world!"),
            ("1004", "20004.wav", "Only in English."),
        ],
        "test": [("1003", "20003.wav", "Goodbye.")],
    },
    "cmn_hans_cn": {
        "train": [("1001", "30001.wav", "你好，世界。"), ("1002", "30002.wav", "早上好。")],
    },
}


def fleurs_row(sentence_id: str, file_name: str, raw: str) -> str:
    normalized = raw.lower().replace(".", "").replace(",", "").replace("!", "")
    characters = " ".join("|" if c == " " else c for c in normalized) + " |"
    return "\t".join([sentence_id, file_name, raw, normalized, characters, str(FS // 2), "FEMALE"])


def make_fleurs(
    root: Path, data: Dict[str, Dict[str, List[Tuple[str, str, str]]]] = FLEURS, extracted: bool = False
) -> Path:
    """The hub's layout (``audio/<split>.tar.gz``), or with ``extracted`` the same audio as a user
    who ran ``tar xzf <split>.tar.gz`` in ``audio/`` has it (``audio/<split>/<file>``, no archive)."""
    for config, splits in data.items():
        for split, rows in splits.items():
            config_dir = root / "data" / config
            write_lines(config_dir / f"{split}.tsv", [fleurs_row(*row) for row in rows])
            (config_dir / "audio").mkdir(parents=True, exist_ok=True)
            if extracted:
                for i, (_, file_name, _) in enumerate(rows):
                    write_wav(config_dir / "audio" / split / file_name, seconds=0.3, freq=300 + 50 * i)
                continue
            with tarfile.open(config_dir / "audio" / f"{split}.tar.gz", "w:gz") as tar:
                for i, (_, file_name, _) in enumerate(rows):
                    wav = write_wav(root / "tmp" / file_name, seconds=0.3, freq=300 + 50 * i)
                    tar.add(wav, arcname=f"{split}/{file_name}")
    shutil.rmtree(root / "tmp", ignore_errors=True)
    return root


# ---------------------------------------------------------------- Common Voice v4 + CoVoST 2
CLIENT_A, CLIENT_B = "a" * 120 + "0123abcd", "b" * 120 + "4567cdef"
#: Common Voice v4 fr validated.tsv rows: (client, path, sentence); quotes (also leading ones, which a
#: quoting TSV reader would strip) and "NA" (which pandas turns into NaN) are text
CV_FR: List[Tuple[str, str, str]] = [
    (CLIENT_A, "common_voice_fr_19000001.mp3", '"Oui", a-t-il dit.'),
    (CLIENT_B, "common_voice_fr_19000002.mp3", "NA"),
    (CLIENT_A, "common_voice_fr_19000003.mp3", "Bonjour à tous."),
    (CLIENT_B, "common_voice_fr_19000004.mp3", "Pas dans CoVoST."),
]
#: covost_v2.fr_en.tsv rows: (path, translation, split)
COVOST_FR_EN: List[Tuple[str, str, str]] = [
    ("common_voice_fr_19000001.mp3", '"Yes," he said.', "train"),
    ("common_voice_fr_19000002.mp3", "NA", "train_covost"),
    ("common_voice_fr_19000003.mp3", "Hello everyone.", "test"),
]


def cv_row(client: str, path: str, sentence: str) -> str:
    return "\t".join([client, path, sentence, "2", "0", "", "", ""])


def make_covost2(root: Path, cache_dir: Path) -> Path:
    locale_dir = root / "fr"
    write_lines(locale_dir / "validated.tsv", [CV_HEADER_V4] + [cv_row(*row) for row in CV_FR])
    sentence = {path: text for _, path, text in CV_FR}
    client = {path: c for c, path, _ in CV_FR}
    write_lines(
        locale_dir / "covost_v2.fr_en.tsv",
        [COVOST_HEADER] + ["\t".join([p, sentence[p], t, client[p], s]) for p, t, s in COVOST_FR_EN],
    )
    for _, path, _ in CV_FR:
        write_encoded(locale_dir / "clips" / path, cache_dir)
    return root


#: Common Voice (recent release) rows per locale and split: (client, path, sentence)
CV_RECENT: Dict[str, Dict[str, List[Tuple[str, str, str]]]] = {
    "de": {
        "train": [
            (CLIENT_A, "common_voice_de_1.mp3", "Das ist ein „Test“."),
            (CLIENT_B, "common_voice_de_2.mp3", "NA"),
        ],
        "test": [(CLIENT_B, "common_voice_de_3.mp3", "Noch ein Satz.")],
    },
    "zh-CN": {"train": [(CLIENT_A, "common_voice_zh-CN_9.mp3", "我们明天见。")]},
}


def cv17_row(client: str, path: str, sentence: str, locale: str) -> str:
    return "\t".join([client, path, "f" * 64, sentence, "", "3", "0", "twenties", "", "", "", locale, ""])


def make_common_voice(root: Path, cache_dir: Path) -> Path:
    """A recent release: the column order differs from v4 (``sentence_id`` before ``sentence``)."""
    for locale, splits in CV_RECENT.items():
        for split, rows in splits.items():
            write_lines(root / locale / f"{split}.tsv", [CV_HEADER_V17] + [cv17_row(*row, locale) for row in rows])
            for _, path, _ in rows:
                write_encoded(root / locale / "clips" / path, cache_dir)
    return root


# ---------------------------------------------------------------- MuST-C
#: (tgt, split) -> rows of (wav, speaker, offset, duration, english, translation)
MUST_C: Dict[Tuple[str, str], List[Tuple[str, str, float, float, str, str]]] = {
    ("de", "train"): [
        ("ted_767.wav", "spk.767", 0.5, 1.25, "Thank you so much.", "Vielen Dank."),
        ("ted_767.wav", "spk.767", 2.0, 0.75, "Hello.", "Hallo."),
    ],
    ("de", "tst-COMMON"): [("ted_1096.wav", "spk.1096", 0.0, 1.5, "It's true.", "Es stimmt.")],
    ("fr", "train"): [("ted_767.wav", "spk.767", 0.5, 1.25, "Thank you so much.", "Merci beaucoup.")],
}


def make_must_c(root: Path) -> Path:
    for (tgt, split), rows in MUST_C.items():
        split_dir = root / f"en-{tgt}" / "data" / split
        items = [
            f"- {{duration: {dur:.6f}, offset: {off:.6f}, rW: 3, uW: 0, speaker_id: {spk}, wav: {wav}}}"
            for wav, spk, off, dur, _, _ in rows
        ]
        write_lines(split_dir / "txt" / f"{split}.yaml", items)
        write_lines(split_dir / "txt" / f"{split}.en", [row[4] for row in rows])
        write_lines(split_dir / "txt" / f"{split}.{tgt}", [row[5] for row in rows])
        for wav, *_ in rows:
            write_wav(split_dir / "wav" / wav, seconds=3.0)
    return root
