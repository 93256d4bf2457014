"""The embedded default corpus: multilingual ASR and X->English ST data made offline.

For every configured language, :func:`~espnet_gated.corpus.grammar.distinct_pairs` draws
distinct sentences with their English translations; the first ones become the test set,
the next the dev set, the rest the training set, so no test or dev sentence is ever
trained on and a bigger training set leaves the test set unchanged. Each sentence is
spoken once by an espeak-ng "speaker" (voice variant, speed, pitch; the test set can hold
out variants) and serves two utterances: ``asr`` and, for non-English speech, ``st_eng``.

Output (all through :func:`espnet_gated.data.datadir.write_data_dir`): ``<out>/train`` and
``<out>/dev`` with every language and task, and ``<out>/test_<lang>_<task>``. Wavs go to
``<audio_dir>/<lang>/<utt>_<digest>.wav``; the digest covers the text and the speaker, so
a re-run reuses exactly the wavs whose content would not change.
"""

import hashlib
import logging
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Tuple, Union

import yaml

from espnet_gated.corpus.grammar import distinct_pairs
from espnet_gated.corpus.languages import get_grammar
from espnet_gated.corpus.synth import SAMPLE_RATE, EspeakError, Speaker, check_speakers, require_espeak, synthesize_to
from espnet_gated.data.datadir import Utterance, write_data_dir
from espnet_gated.recipe.scoring import NORMALIZERS
from espnet_gated.utils import PathLike, Progress, atomic_write

SPLITS = ("test", "dev", "train")  # the order sentences are dealt out in
TRANSLATION_LANG = "eng"
#: the data dirs this corpus wrote last time, so a re-run can remove ones no longer configured
SETS_FILE = "embedded_sets.txt"


class CorpusConfigError(ValueError):
    """A bad corpus config; the message names the file (when there is one) and the key."""


@dataclass(frozen=True)
class LanguageConfig:
    code: str  # ISO-639-3, a built-in grammar
    voice: str  # espeak-ng voice, e.g. "de"
    normalizer: str  # text normalizer of WER scoring (kept for the scoring stage)


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate; every field is checked on construction (also after ``replace``)."""

    languages: Tuple[LanguageConfig, ...]
    sentences: Mapping[str, int] = field(default_factory=lambda: {"train": 2000, "dev": 100, "test": 150})
    words: Tuple[int, int] = (4, 9)
    train_variants: Tuple[str, ...] = ("m1", "m3", "m5", "f1", "f2", "f4")
    test_variants: Tuple[str, ...] = ("m2", "f3")  # held-out speakers; empty: the train ones
    speeds: Tuple[int, ...] = (150, 170, 190)
    pitches: Tuple[int, ...] = (35, 50, 65)
    seed: int = 0

    def __post_init__(self):
        codes = [lang.code for lang in self.languages]
        if not codes:
            raise CorpusConfigError("languages: at least one language is needed")
        if len(set(codes)) != len(codes):
            raise CorpusConfigError(f"languages: a code appears twice in {codes}")
        for lang in self.languages:
            try:
                get_grammar(lang.code)
            except ValueError as e:
                raise CorpusConfigError(f"languages: {e}") from None
            if not lang.voice or any(c.isspace() or c == "+" for c in lang.voice):
                raise CorpusConfigError(
                    f"languages: '{lang.code}' needs an espeak-ng voice like 'de', got '{lang.voice}'"
                )
            if lang.normalizer not in NORMALIZERS:
                raise CorpusConfigError(
                    f"languages: '{lang.code}' has normalizer '{lang.normalizer}'; known: {', '.join(NORMALIZERS)}"
                )
        sentences = self.sentences if isinstance(self.sentences, Mapping) else {}
        if set(sentences) != set(SPLITS) or not all(_positive_int(n) for n in sentences.values()):
            raise CorpusConfigError(f"sentences: needs a positive count for each of {SPLITS}, got {self.sentences}")
        if len(self.words) != 2 or not all(_positive_int(n) for n in self.words) or self.words[0] > self.words[1]:
            raise CorpusConfigError(f"words: needs [min, max] with 1 <= min <= max, got {list(self.words)}")
        if not self.train_variants:
            raise CorpusConfigError("speakers.train_variants: needs at least one espeak-ng variant")
        if not self.speeds or not all(_positive_int(s) and 80 <= s <= 450 for s in self.speeds):
            raise CorpusConfigError(f"speakers.speeds: needs words per minute in 80..450, got {list(self.speeds)}")
        if not self.pitches or not all(isinstance(p, int) and 0 <= p <= 99 for p in self.pitches):
            raise CorpusConfigError(f"speakers.pitches: needs values in 0..99, got {list(self.pitches)}")
        if not isinstance(self.seed, int):
            raise CorpusConfigError(f"seed: needs an integer, got {self.seed!r}")

    def variants_of(self, split: str) -> Tuple[str, ...]:
        return (self.test_variants or self.train_variants) if split == "test" else self.train_variants


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _config_from_mapping(raw: Mapping) -> CorpusConfig:
    known = {"languages", "sentences", "words", "speakers", "seed"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CorpusConfigError(f"unknown key(s) {unknown}; known: {sorted(known)}")
    speakers = dict(raw.get("speakers") or {})
    speaker_keys = {"train_variants", "test_variants", "speeds", "pitches"}
    if set(speakers) - speaker_keys:
        raise CorpusConfigError(f"speakers: unknown key(s) {sorted(set(speakers) - speaker_keys)}")
    languages = []
    for entry in raw.get("languages") or []:
        if not isinstance(entry, Mapping) or set(entry) != {"code", "voice", "normalizer"}:
            raise CorpusConfigError(f"languages: each entry needs exactly code, voice and normalizer, got {entry}")
        languages.append(LanguageConfig(str(entry["code"]), str(entry["voice"]), str(entry["normalizer"])))
    lists = {f"speakers.{key}": value for key, value in speakers.items()}
    if "words" in raw:
        lists["words"] = raw["words"]
    for name, value in lists.items():
        if not isinstance(value, list):
            raise CorpusConfigError(f"{name}: needs a list, got {value!r}")
    values = {key.split(".")[-1]: tuple(value) for key, value in lists.items()}
    values.update({key: raw[key] for key in ("sentences", "seed") if key in raw})
    return CorpusConfig(languages=tuple(languages), **values)


def load_config(source: Union[PathLike, Mapping, CorpusConfig]) -> CorpusConfig:
    """A checked config from a YAML file, a mapping of the same shape, or a config."""
    if isinstance(source, CorpusConfig):
        return source
    if isinstance(source, Mapping):
        return _config_from_mapping(source)
    try:
        raw = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, Mapping):
            raise CorpusConfigError("the file must hold a mapping")
        return _config_from_mapping(raw)
    except (CorpusConfigError, yaml.YAMLError) as e:
        raise CorpusConfigError(f"{source}: {e}") from None


@dataclass(frozen=True)
class SpokenSentence:
    """One wav of the corpus and the sentence pair it speaks."""

    utt: str  # utterance id without the task suffix
    lang: str
    split: str
    text: str
    translation: str
    speaker: Speaker
    wav: Path

    @property
    def speaker_id(self) -> str:
        return f"{self.lang}_{self.speaker.variant}_s{self.speaker.speed}_p{self.speaker.pitch}"

    def utterances(self) -> List[Utterance]:
        """The ASR utterance, and the ST one for non-English speech (same audio)."""
        tasks = [("asr", self.text)]
        if self.lang != TRANSLATION_LANG:
            tasks.append((f"st_{TRANSLATION_LANG}", self.translation))
        return [
            Utterance(f"{self.utt}_{task}", self.speaker_id, self.lang, task, target, self.text, str(self.wav))
            for task, target in tasks
        ]


def check_disjoint(lang: str, splits: Mapping[str, Iterable[str]]) -> None:
    """Raise if a dev or test sentence also is in train (or a test one in dev)."""
    seen: Dict[str, str] = {}
    for split in SPLITS:
        for sentence in splits[split]:
            if seen.setdefault(sentence, split) != split:
                raise ValueError(f"{lang}: sentence '{sentence}' is in both {seen[sentence]} and {split}")


def plan_corpus(config: CorpusConfig, audio_dir: PathLike) -> List[SpokenSentence]:
    """Every sentence of every language and split with its speaker and wav path (deterministic)."""
    english = get_grammar(TRANSLATION_LANG)
    min_words, max_words = config.words
    planned = []
    for lang in config.languages:
        total = sum(config.sentences.values())
        dealt = iter(distinct_pairs(get_grammar(lang.code), english, total, config.seed, min_words, max_words))
        splits = {split: [next(dealt) for _ in range(config.sentences[split])] for split in SPLITS}
        check_disjoint(lang.code, {split: [text for text, _ in pairs] for split, pairs in splits.items()})
        rng = random.Random(f"{config.seed}:{lang.code}:speakers")
        for split in SPLITS:
            for index, (text, translation) in enumerate(splits[split]):
                speaker = Speaker(
                    lang.voice,
                    rng.choice(config.variants_of(split)),
                    rng.choice(config.speeds),
                    rng.choice(config.pitches),
                )
                utt = f"{lang.code}_{split}_{index:05d}"
                content = "\n".join([*speaker.espeak_args(), str(SAMPLE_RATE), text])
                digest = hashlib.sha1(content.encode("utf-8")).hexdigest()[:10]
                wav = Path(audio_dir) / lang.code / f"{utt}_{digest}.wav"
                planned.append(SpokenSentence(utt, lang.code, split, text, translation, speaker, wav))
    return planned


def _synthesize(sentence: SpokenSentence) -> int:
    try:
        return synthesize_to(sentence.wav, sentence.text, sentence.speaker)
    except EspeakError as e:
        raise EspeakError(f"utterance '{sentence.utt}': {e}") from None


def synthesize_all(sentences: List[SpokenSentence], nj: int) -> List[int]:
    """Samples of each sentence's wav, synthesizing those not on disk in ``nj`` processes."""
    for wav_dir in sorted({s.wav.parent for s in sentences}):
        wav_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(sentences), "wavs")
    executor = ProcessPoolExecutor(nj) if nj > 1 else None
    results = executor.map(_synthesize, sentences, chunksize=16) if executor else map(_synthesize, sentences)
    samples = []
    try:
        for n in results:
            samples.append(n)
            progress.update()
    finally:
        if executor:
            executor.shutdown(cancel_futures=True)
    progress.update(0, force=True)
    return samples


def _replace_stale_sets(out_dir: Path, written: List[str]) -> None:
    """Remove data dirs an earlier run of this corpus wrote that this config no longer has."""
    record = out_dir / SETS_FILE
    if record.exists():
        for name in sorted(set(record.read_text(encoding="utf-8").split()) - set(written)):
            if (out_dir / name).is_dir():
                logging.info(f"removing {out_dir / name}: no longer in the corpus config")
                shutil.rmtree(out_dir / name)
    atomic_write(record, "".join(f"{name}\n" for name in written))


def prepare_embedded(
    config: Union[PathLike, Mapping, CorpusConfig], out_dir: PathLike, audio_dir: PathLike, nj: int = 1
) -> Dict[str, int]:
    """Synthesize the corpus and write its data dirs; return the utterance count of each dir.

    Idempotent: wavs already on disk are reused, the data dirs are rewritten atomically.
    """
    config = load_config(config)
    require_espeak()
    variants = sorted(set(config.train_variants) | set(config.test_variants))
    for lang in config.languages:
        check_speakers(lang.voice, variants)
    sentences = plan_corpus(config, audio_dir)
    logging.info(f"{len(sentences)} sentences in {len(config.languages)} languages; synthesizing with nj={nj}")
    samples = synthesize_all(sentences, nj)

    sets: Dict[str, List[Utterance]] = {}
    hours: Dict[str, float] = {}
    for sentence, n in zip(sentences, samples, strict=True):
        for u in sentence.utterances():
            name = f"test_{u.lang}_{u.task}" if sentence.split == "test" else sentence.split
            sets.setdefault(name, []).append(u)
        hours[sentence.split] = hours.get(sentence.split, 0.0) + n / SAMPLE_RATE / 3600
    out_dir = Path(out_dir)
    counts = {name: write_data_dir(out_dir / name, utts) for name, utts in sorted(sets.items())}
    _replace_stale_sets(out_dir, sorted(counts))
    for split in SPLITS:
        n_sentences = sum(s.split == split for s in sentences)
        logging.info(f"{split}: {n_sentences} wavs, {hours[split]:.2f} h of speech")
    for name, n in counts.items():
        logging.info(f"{out_dir / name}: {n} utterances")
    return counts
