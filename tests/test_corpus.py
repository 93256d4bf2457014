"""The embedded corpus: grammars, splits, espeak-ng synthesis, data dirs, CLI and data script."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from espnet_gated.bin import make_embedded_corpus
from espnet_gated.corpus.embedded import (
    CorpusConfigError,
    check_disjoint,
    load_config,
    plan_corpus,
    prepare_embedded,
)
from espnet_gated.corpus.grammar import Frame, NounPhrase, RomanceGrammar, distinct_pairs
from espnet_gated.corpus.languages import GRAMMARS, get_grammar
from espnet_gated.corpus.languages.ita import Italian
from espnet_gated.corpus.synth import EspeakError, check_speakers
from espnet_gated.data.datadir import read_data_dir, validate_data_dir
from espnet_gated.recipe.scoring import load_normalizers
from espnet_gated.utils import read_kaldi_map

REPO = Path(__file__).resolve().parents[1]
ENG = GRAMMARS["eng"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def tiny_config(languages=("deu", "eng"), **overrides):
    voices = {"deu": "de", "eng": "en-us", "fra": "fr"}
    config = {
        "languages": [{"code": code, "voice": voices[code], "normalizer": "basic"} for code in languages],
        "sentences": {"train": 4, "dev": 2, "test": 2},
        "speakers": {"train_variants": ["m3", "f2"], "test_variants": ["m2"], "speeds": [170], "pitches": [50]},
    }
    config.update(overrides)
    return config


# ---------------------------------------------------------------- grammars


@pytest.mark.parametrize("code", sorted(GRAMMARS))
def test_each_grammar_yields_thousands_of_distinct_short_pairs(code):
    pairs = distinct_pairs(GRAMMARS[code], ENG, 3000, seed=0, min_words=4, max_words=9)
    assert len({source for source, _ in pairs}) == 3000
    assert len({translation for _, translation in pairs}) > 2900  # few sentences share a translation
    assert all(4 <= len(source.split()) <= 9 for source, _ in pairs)
    if code != "eng":
        assert not any(source == translation for source, translation in pairs)


@pytest.mark.parametrize("code", sorted(GRAMMARS))
def test_sentences_and_translations_are_cased_and_punctuated(code):
    for source, translation in distinct_pairs(GRAMMARS[code], ENG, 500, seed=3):
        assert re.fullmatch(r"[A-Z][A-Za-z ]*[a-z]\.", translation), translation
        assert source[0].isupper() and source.endswith(".") and "  " not in source, source
        assert source == " ".join(source.split())


def test_generation_is_deterministic_and_longer_lists_only_append():
    deu = GRAMMARS["deu"]
    first = distinct_pairs(deu, ENG, 200, seed=7)
    assert distinct_pairs(deu, ENG, 200, seed=7) == first
    assert distinct_pairs(deu, ENG, 500, seed=7)[:200] == first  # the test set survives a bigger train set
    assert distinct_pairs(deu, ENG, 200, seed=8) != first


def test_too_many_sentences_for_the_length_range_is_a_clear_error():
    with pytest.raises(ValueError, match="found only .* of 2000 distinct sentences of 3-3 words"):
        distinct_pairs(GRAMMARS["eng"], ENG, 2000, seed=0, min_words=3, max_words=3)  # "I eat eggs."


@pytest.mark.parametrize("code", sorted(GRAMMARS))
def test_lexicon_entries_have_the_shape_their_grammar_reads(code):
    grammar = GRAMMARS[code]
    grammar.check_lexicon()
    if code == "eng":
        assert all(len(forms) == 2 for forms in grammar.verbs.values())
        return
    assert all(len(forms.split()) == 5 for forms in grammar.verbs.values())
    genders = {"deu": {"m", "f", "n"}, "nld": {"de", "het"}}.get(code, {"m", "f", "m/f"})
    assert all(len(e.split()) == 3 and e.split()[0] in genders for e in grammar.nouns.values())
    if isinstance(grammar, RomanceGrammar):
        assert all(len(forms.split()) == 4 for forms in grammar.adjectives.values())


def test_missing_concept_is_named():
    class Broken(Italian):
        verbs = {k: v for k, v in Italian.verbs.items() if k != "buy"}

    with pytest.raises(ValueError, match=r"grammar 'ita': verbs lacks \['buy'\]"):
        Broken().check_lexicon()


NP = NounPhrase
# (language, frame, sentence, its English translation or None): agreement a grammar bug would break
HAND_CHECKED = [
    ("deu", Frame(NP("man"), "buy", NP("apple", definite=False, adjective="red"), time="today", time_first=True),
     "Heute kauft der Mann einen roten Apfel.", "Today the man buys a red apple."),
    ("deu", Frame("you", "see", NP("horse", adjective="white"), place="park"),
     "Du siehst das weiße Pferd im Park.", "You see the white horse in the park."),
    ("deu", Frame(NP("child", plural=True), "eat", NP("cake", plural=True, definite=False, adjective="fresh")),
     "Die Kinder essen frische Kuchen.", "The children eat fresh cakes."),
    ("deu", Frame(NP("woman", definite=False), "want", NP("bag", definite=False, adjective="new"), time="tomorrow"),
     "Eine Frau will morgen eine neue Tasche.", "A woman will want a new bag tomorrow."),
    ("deu", Frame(NP("boy", definite=False), "read", NP("book", definite=False, adjective="blue")),
     "Ein Junge liest ein blaues Buch.", "A boy reads a blue book."),
    ("deu", Frame(NP("doctor_f", plural=True), "open", NP("door", plural=True, adjective="green")),
     "Die Ärztinnen öffnen die grünen Türen.", "The doctors open the green doors."),
    ("fra", Frame("i", "buy", NP("apple", definite=False, adjective="green")),
     "J'achète une pomme verte.", "I buy a green apple."),
    ("fra", Frame(NP("man"), "see", NP("bird")), "L'homme voit l'oiseau.", "The man sees the bird."),
    ("fra", Frame(NP("girl", plural=True), "wash", NP("car", plural=True, definite=False, adjective="white"),
                  time="every_day", time_first=True),
     "Chaque jour, les filles lavent des voitures blanches.", "Every day the girls wash white cars."),
    ("fra", Frame("i", "see", NP("clock", adjective="broken")), "Je vois l'horloge cassée.", None),
    ("ita", Frame(NP("friend_f", definite=False), "open", NP("box", adjective="red")),
     "Un'amica apre la scatola rossa.", "A friend opens the red box."),
    ("ita", Frame(NP("man", plural=True), "eat", NP("egg", plural=True, adjective="fresh")),
     "Gli uomini mangiano le uova fresche.", "The men eat the fresh eggs."),
    ("ita", Frame("we", "see", NP("bird", definite=False)), "Noi vediamo un uccello.", "We see a bird."),
    ("ita", Frame("they", "buy", NP("apple", plural=True, definite=False), place="market"),
     "Loro comprano mele al mercato.", "They buy apples at the market."),
    ("spa", Frame("she", "love", NP("cat")), "Ella ama al gato.", "She loves the cat."),
    ("spa", Frame(NP("boy", plural=True), "feed", NP("horse", plural=True, adjective="black")),
     "Los chicos alimentan a los caballos negros.", "The boys feed the black horses."),
    ("spa", Frame("i", "buy", NP("bottle", definite=False, adjective="blue"), time="tomorrow", time_first=True),
     "Mañana, yo compro una botella azul.", "Tomorrow I will buy a blue bottle."),
    ("por", Frame(NP("woman"), "buy", NP("apple", plural=True, definite=False, adjective="red")),
     "A mulher compra maçãs vermelhas.", "The woman buys red apples."),
    ("por", Frame("we", "have", NP("car", definite=False, adjective="blue")), "Nós temos um carro azul.", None),
    ("nld", Frame("you", "buy", NP("book", definite=False, adjective="red"), time="today", time_first=True),
     "Vandaag koop jij een rood boek.", "Today you buy a red book."),
    ("nld", Frame(NP("man"), "love", NP("dog", adjective="black"), time="tomorrow"),
     "De man houdt morgen van de zwarte hond.", "The man will love the black dog tomorrow."),
    ("nld", Frame(NP("girl", definite=False), "see", NP("horse", adjective="white")),
     "Een meisje ziet het witte paard.", "A girl sees the white horse."),
    ("eng", Frame("i", "eat", NP("egg", definite=False)), "I eat an egg.", None),
    ("eng", Frame(NP("teacher_f"), "search", NP("key"), time="noon", time_first=True),
     "At noon the teacher looks for the key.", None),
]  # fmt: skip


@pytest.mark.parametrize("code,frame,sentence,translation", HAND_CHECKED)
def test_hand_checked_sentences(code, frame, sentence, translation):
    assert GRAMMARS[code].render(frame) == sentence
    if translation is not None:
        assert ENG.render(frame) == translation


def test_italian_lo_before_s_plus_consonant_and_z():
    italian = Italian()
    assert [italian.article("m", False, True, noun) for noun in ("zaino", "studente", "sale", "amico")] == [
        "lo", "lo", "il", "l'"
    ]  # fmt: skip
    assert (italian.article("m", True, True, "zaini"), italian.article("m", False, False, "zaino")) == ("gli", "uno")


def test_unknown_language_lists_the_builtin_ones():
    with pytest.raises(ValueError, match="built-in: deu, eng, fra, ita, nld, por, spa"):
        get_grammar("xyz")
    with pytest.raises(CorpusConfigError, match="no built-in grammar for language 'xyz'; built-in: deu, eng"):
        load_config({"languages": [{"code": "xyz", "voice": "xy", "normalizer": "basic"}]})


# ---------------------------------------------------------------- config and splits


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "corpus.yaml"
    path.write_text("languages:\n  - {code: deu, voice: de, normalizer: fancy}\n")
    with pytest.raises(
        CorpusConfigError, match=r"corpus.yaml: languages: 'deu' has normalizer 'fancy'; known: basic, cer"
    ):
        load_config(path)
    with pytest.raises(CorpusConfigError, match="sentences: needs a positive count"):
        load_config(tiny_config(sentences={"train": 4, "dev": 0, "test": 2}))
    with pytest.raises(CorpusConfigError, match=r"unknown key\(s\) \['sentense'\]"):
        load_config(tiny_config(sentense=3))
    with pytest.raises(CorpusConfigError, match="speakers.speeds: needs a list, got 170"):
        load_config(tiny_config(speakers={"train_variants": ["m3"], "speeds": 170}))


def test_repository_config_has_the_paper_languages_and_the_scoring_stage_reads_it():
    path = REPO / "conf" / "corpus.yaml"
    config = load_config(path)
    assert {"deu", "fra", "ita", "eng"} <= {lang.code for lang in config.languages}
    assert load_normalizers(path) == {lang.code: lang.normalizer for lang in config.languages}


def test_splits_are_sentence_disjoint_and_test_speakers_are_held_out(tmp_path):
    config = load_config(tiny_config(languages=("deu", "fra"), sentences={"train": 300, "dev": 40, "test": 40}))
    planned = plan_corpus(config, tmp_path)
    for lang in ("deu", "fra"):
        texts = {
            split: {s.text for s in planned if s.lang == lang and s.split == split}
            for split in ("train", "dev", "test")
        }
        assert [len(texts[split]) for split in ("train", "dev", "test")] == [300, 40, 40]
        assert not texts["train"] & (texts["dev"] | texts["test"]) and not texts["dev"] & texts["test"]
    assert {s.speaker.variant for s in planned if s.split == "test"} == {"m2"}
    assert {s.speaker.variant for s in planned if s.split != "test"} == {"m3", "f2"}
    assert plan_corpus(config, tmp_path) == planned
    with pytest.raises(ValueError, match="'Der Hund.' is in both dev and train"):
        check_disjoint("deu", {"test": [], "dev": ["Der Hund."], "train": ["Die Katze.", "Der Hund."]})


# ---------------------------------------------------------------- synthesis end to end


@needs_espeak
def test_prepare_embedded_writes_valid_dirs_and_reuses_audio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative audio paths, as in the recipe
    counts = prepare_embedded(tiny_config(), "data", "audio", nj=2)
    assert counts == {"train": 12, "dev": 6, "test_deu_asr": 2, "test_deu_st_eng": 2, "test_eng_asr": 2}
    for name, n in counts.items():
        assert validate_data_dir(Path("data") / name, check_audio=True) == n
    wavs = sorted(Path("audio").rglob("*.wav"))
    assert len(wavs) == 2 * (4 + 2 + 2)
    for wav in wavs:
        info = soundfile.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.6 < info.duration < 5.0, wav
    train = {u.utt_id: u for u in read_data_dir("data/train")}
    asr, st = train["deu_train_00000_asr"], train["deu_train_00000_st_eng"]
    assert asr.audio == st.audio and asr.audio.startswith("audio/deu/")
    assert asr.text == asr.text_ctc == st.text_ctc and st.text != asr.text  # German speech, English target
    assert (asr.lang, asr.task, st.task) == ("deu", "asr", "st_eng")
    assert not any(u.task != "asr" for u in train.values() if u.lang == "eng")
    assert set(read_kaldi_map("data/test_deu_st_eng/utt2spk").values()) == {"deu_m2_s170_p50"}

    mtimes = {wav: wav.stat().st_mtime_ns for wav in wavs}
    prepare_embedded(tiny_config(), "data", "audio", nj=2)
    assert {wav: wav.stat().st_mtime_ns for wav in sorted(Path("audio").rglob("*.wav"))} == mtimes

    prepare_embedded(tiny_config(languages=("deu",)), "data", "audio", nj=1)  # eng dropped from the config
    assert sorted(p.name for p in Path("data").iterdir() if p.is_dir()) == [
        "dev",
        "test_deu_asr",
        "test_deu_st_eng",
        "train",
    ]


@needs_espeak
def test_failing_espeak_names_the_utterance_and_command_and_leaves_no_wav(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "espeak-ng"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --voices=*|-q) exec {shutil.which("espeak-ng")} "$@";; esac\n'
        "echo 'voice exploded' >&2; exit 3\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(
        EspeakError, match=r"utterance 'deu_test_00000': '.*espeak-ng -v de\+m2 .*' failed \(exit 3\): voice exploded"
    ):
        prepare_embedded(tiny_config(), tmp_path / "data", tmp_path / "audio", nj=1)
    assert not list((tmp_path / "audio").rglob("*.wav*"))


def test_missing_espeak_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EspeakError, match="sudo apt-get install espeak-ng"):
        prepare_embedded(tiny_config(), tmp_path / "data", tmp_path / "audio")


@needs_espeak
def test_unknown_voice_variant_is_refused_up_front():
    with pytest.raises(EspeakError, match=r"no voice variant\(s\) \['m99'\]"):
        check_speakers("de", ["m3", "m99"])
    with pytest.raises(EspeakError, match="no voice 'qq'"):
        check_speakers("qq", ["m3"])


def test_data_script_without_espeak_exits_with_the_install_hint(tmp_path):
    proc = subprocess.run(
        [shutil.which("bash"), str(REPO / "local" / "data.sh"), "--nj", "2"],
        env={"PATH": str(tmp_path), "PYTHON": sys.executable},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "sudo apt-get install espeak-ng" in proc.stderr and "brew install espeak-ng" in proc.stderr


def test_cli_reports_config_errors_without_a_traceback(tmp_path):
    config = tmp_path / "corpus.yaml"
    config.write_text("languages:\n  - {code: klingon, voice: xx, normalizer: basic}\n")
    with pytest.raises(SystemExit, match="make_embedded_corpus: error: .*built-in: deu, eng, fra, ita, nld, por, spa"):
        make_embedded_corpus.main(["--config", str(config), "--out", str(tmp_path), "--audio_dir", str(tmp_path)])


@needs_espeak
def test_cli_overrides_sizes(tmp_path):
    config = tmp_path / "corpus.yaml"
    config.write_text(
        "languages:\n  - {code: fra, voice: fr, normalizer: basic}\nsentences: {train: 50, dev: 9, test: 9}\n"
    )
    make_embedded_corpus.main(
        ["--config", str(config), "--out", str(tmp_path / "data"), "--audio_dir", str(tmp_path / "audio")]
        + ["--train_sentences", "2", "--dev_sentences", "1", "--test_sentences", "1", "--nj", "2"]
    )
    assert validate_data_dir(tmp_path / "data" / "train", check_audio=True) == 4
    assert validate_data_dir(tmp_path / "data" / "test_fra_st_eng", check_audio=True) == 1
