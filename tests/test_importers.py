"""Real-corpus importers on hand-made miniatures of the published layouts (tests/corpus_miniatures.py)."""

import os
import shutil
import string
from pathlib import Path

import pytest
import soundfile
from corpus_miniatures import (
    CLIENT_A,
    CLIENT_B,
    COVOST_HEADER,
    CV_HEADER_V4,
    EUROPARL,
    SPEECH_DE1,
    SPEECH_DE2,
    SPEECH_FR1,
    make_common_voice,
    make_covost2,
    make_europarl_st,
    make_fleurs,
    make_must_c,
    write_lines,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_gated.bin.prepare import main as prepare_main
from espnet_gated.data.datadir import read_data_dir, validate_data_dir
from espnet_gated.data.langs import CER_LANGS, to_iso3
from espnet_gated.importers import (
    CorpusError,
    prepare_common_voice,
    prepare_covost2,
    prepare_europarl_st,
    prepare_fleurs,
    prepare_must_c,
)
from espnet_gated.importers.common import read_lines, read_tsv
from espnet_gated.utils import read_kaldi_map

FLEURS_CONFIGS = """
af_za am_et ar_eg as_in ast_es az_az be_by bg_bg bn_in bs_ba ca_es ceb_ph ckb_iq cmn_hans_cn cs_cz cy_gb da_dk
de_de el_gr en_us es_419 et_ee fa_ir ff_sn fi_fi fil_ph fr_fr ga_ie gl_es gu_in ha_ng he_il hi_in hr_hr hu_hu hy_am
id_id ig_ng is_is it_it ja_jp jv_id ka_ge kam_ke kea_cv kk_kz km_kh kn_in ko_kr ky_kg lb_lu lg_ug ln_cd lo_la lt_lt
luo_ke lv_lv mi_nz mk_mk ml_in mn_mn mr_in ms_my mt_mt my_mm nb_no ne_np nl_nl nso_za ny_mw oc_fr om_et or_in pa_in
pl_pl ps_af pt_br ro_ro ru_ru sd_in sk_sk sl_si sn_zw so_so sr_rs sv_se sw_ke ta_in te_in tg_tj th_th tr_tr uk_ua
umb_ao ur_pk uz_uz vi_vn wo_sn xh_za yo_ng yue_hant_hk zu_za
""".split()
#: CoVoST 2 (X->en sources, en->X targets) and MuST-C v1-v3 targets
COVOST_MUSTC = "fr de es ca it ru zh-CN pt fa et mn nl tr ar sv-SE lv sl ta ja id cy en ro cs vi".split()
CV_LOCALES = """
ab af am an ar as ast az ba bas be bg bn br ca ckb cnh cs cv cy da de dv dyu el en eo es et eu fa fi fr fy-NL ga-IE
gl gn ha he hi hsb ht hu hy-AM ia id ig is it ja ka kab kk kmr ko ky lg lij lo lt ltg lv mdf mhr mk ml mn mr mrj mt
myv nan-tw nb-NO ne-NP nhi nl nn-NO nso oc or os pa-IN pl ps pt quy rm-sursilv rm-vallader ro ru rw sah sat sc sk skr
sl sq sr sv-SE sw ta te tg th ti tig tk tok tr tt tw ug uk ur uz vi vot yi yo yue zgh zh-CN zh-HK zh-TW zu zza
""".split()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("encoded")


def lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def check_dir(data_dir: Path) -> dict:
    """Valid, audio present, Kaldi-sortable (speaker-prefixed ids); returns utt -> Utterance."""
    validate_data_dir(data_dir, check_audio=True)
    utt2spk = read_kaldi_map(data_dir / "utt2spk")
    assert all(utt.startswith(f"{spk}-") for utt, spk in utt2spk.items())
    assert list(utt2spk.values()) == sorted(utt2spk.values()), "sorting by utterance must sort by speaker"
    for key, path in read_kaldi_map(data_dir / "wav.scp").items():
        assert os.path.isabs(path), (key, path)
    tasks = read_kaldi_map(data_dir / "utt2task")
    assert all(utt.endswith(f"-{task}") for utt, task in tasks.items())
    return {u.utt_id: u for u in read_data_dir(data_dir)}


def texts(utts: dict, lang: str, task: str):
    return sorted(u.text for u in utts.values() if (u.lang, u.task) == (lang, task))


# ---------------------------------------------------------------- langs.py
@pytest.mark.parametrize(
    "code, iso3",
    [
        ("de", "deu"), ("deu", "deu"), ("de_de", "deu"), ("de-DE", "deu"), ("<deu>", "deu"), ("pt-BR", "por"),
        ("zh-CN", "zho"), ("zh-TW", "zho"), ("zh-HK", "yue"), ("cmn_hans_cn", "zho"), ("yue_hant_hk", "yue"),
        ("es_419", "spa"), ("nb_no", "nob"), ("no", "nob"), ("sv-SE", "swe"), ("fil_ph", "fil"), ("rm-vallader", "roh"),
        ("ceb_ph", "ceb"), ("ja", "jpn"), ("fa", "fas"),
    ],
)  # fmt: skip
def test_to_iso3_maps_corpus_codes(code, iso3):
    assert to_iso3(code) == iso3


def test_every_fleurs_covost_mustc_and_cv_code_is_covered():
    assert len(FLEURS_CONFIGS) == 102
    mapped = {code: to_iso3(code) for code in FLEURS_CONFIGS + COVOST_MUSTC + CV_LOCALES}
    assert all(len(iso3) == 3 and iso3.isalpha() and iso3.islower() for iso3 in mapped.values())
    assert len({mapped[c] for c in FLEURS_CONFIGS}) == 102, "two FLEURS configs share a language token"


def test_unknown_code_error_names_it_and_hints():
    with pytest.raises(ValueError, match=r"unknown language code 'deux'.*close matches: deu"):
        to_iso3("deux")
    with pytest.raises(ValueError, match="espnet_gated/data/langs.py"):
        to_iso3("qq")


def test_cer_langs_are_languages_without_word_spaces():
    assert {"zho", "jpn", "tha", "yue"} <= CER_LANGS and "deu" not in CER_LANGS
    assert to_iso3("cmn_hans_cn") in CER_LANGS and to_iso3("ja_jp") in CER_LANGS


# ---------------------------------------------------------------- Europarl-ST
def test_europarl_st_asr_from_one_pair_and_st_to_every_target(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    counts = prepare_europarl_st(root, tmp_path / "data")
    # train: de asr 3 (from de/en only) + st_eng 3 + st_fra 2; fr asr 1 + st_eng 1
    assert counts == {"train": 10, "test": 2}
    train = check_dir(tmp_path / "data" / "train")
    assert texts(train, "deu", "asr") == ["Das Haus ist groß.", "Guten Tag.", "Wir stimmen zu."]
    assert texts(train, "deu", "st_fra") == ["Bonjour.", "Nous sommes d'accord."]
    assert texts(train, "fra", "st_eng") == ["Thank you, Mr President."]
    rec = f"epst-de-{SPEECH_DE1}"
    utt = f"{rec}-00001200-00002500-st_eng"
    assert f"{utt} <deu><st_eng><notimestamps> The house is big." in lines(tmp_path / "data/train/text")
    assert f"{utt} Das Haus ist groß." in lines(tmp_path / "data/train/text.ctc")
    assert f"{utt} {rec} 1.200 2.500" in lines(tmp_path / "data/train/segments")
    assert read_kaldi_map(tmp_path / "data/train/wav.scp") == {
        rec: str(root / "de/audios" / f"{SPEECH_DE1}.m4a"),
        f"epst-de-{SPEECH_DE2}": str(root / "de/audios" / f"{SPEECH_DE2}.m4a"),
        f"epst-fr-{SPEECH_FR1}": str(root / "fr/audios" / f"{SPEECH_FR1}.m4a"),
    }
    test = check_dir(tmp_path / "data" / "test")
    assert sorted((u.task, u.text) for u in test.values()) == [("asr", "Danke schön."), ("st_eng", "Thank you.")]


def test_europarl_st_selection_accepts_corpus_and_iso3_codes(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    prepare_europarl_st(root, tmp_path / "a", langs=["de"], tasks=["asr", "st_en"])
    prepare_europarl_st(root, tmp_path / "b", langs=["deu"], tasks=["asr", "st_eng"])
    assert (tmp_path / "a/train/text").read_bytes() == (tmp_path / "b/train/text").read_bytes()
    assert set(read_kaldi_map(tmp_path / "a/train/utt2task").values()) == {"asr", "st_eng"}
    assert set(read_kaldi_map(tmp_path / "a/train/utt2lang").values()) == {"deu"}
    prepare_europarl_st(root, tmp_path / "a", langs=["fra"])  # French has no test split: a's old one must go
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["train"]
    with pytest.raises(CorpusError, match=r"no language 'ita' \(found: de, fr\)"):
        prepare_europarl_st(root, tmp_path / "c", langs=["ita"])
    with pytest.raises(CorpusError, match="no data for task.*st_jpn"):
        prepare_europarl_st(root, tmp_path / "c", tasks=["asr", "st_jpn"])
    with pytest.raises(CorpusError, match="task 'st_xx': unknown language code 'xx'"):
        prepare_europarl_st(root, tmp_path / "c", tasks=["st_xx"])
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_europarl_st_line_counts_that_disagree_refuse_the_split(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    split_dir = root / "de/en/train"
    write_lines(split_dir / "segments.en", ["Good day.", "The house is big."])
    with pytest.raises(CorpusError) as err:
        prepare_europarl_st(root, tmp_path / "data")
    message = str(err.value)
    assert str(split_dir) in message and "segments.lst 3, segments.de 3, segments.en 2" in message
    assert "\n" not in message
    assert not (tmp_path / "data").exists()


def test_europarl_st_a_failing_split_leaves_earlier_output_untouched(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    out = tmp_path / "data"
    prepare_europarl_st(root, out)
    before = {name: (out / name / "text").read_bytes() for name in ("train", "test")}
    write_lines(root / "de/en/test/segments.de", ["Danke sehr."])  # would change test ...
    rows = EUROPARL["de", "en", "train"]  # ... but train now repeats a segment: duplicate utterance ids
    write_lines(root / "de/en/train/segments.lst", [f"{s} {a} {b}" for s, a, b, _, _ in rows[:2] + rows[:1]])
    with pytest.raises(ValueError, match="duplicate utterance id"):
        prepare_europarl_st(root, out)
    assert {name: (out / name / "text").read_bytes() for name in ("train", "test")} == before
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]  # no staging left behind


def test_europarl_st_missing_audio_is_named(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    missing = root / "de/audios" / f"{SPEECH_DE2}.m4a"
    missing.unlink()
    with pytest.raises(CorpusError, match=f"{missing}: audio file missing"):
        prepare_europarl_st(root, tmp_path / "data")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_europarl_st_bad_segment_line_names_file_and_line(tmp_path, cache_dir):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    write_lines(root / "fr/en/train/segments.lst", [f"{SPEECH_FR1} 2.00 0.25"])
    with pytest.raises(CorpusError, match=r"fr/en/train/segments.lst:1: expected '<speech_id> <start_s> <end_s>'"):
        prepare_europarl_st(root, tmp_path / "data")


def test_europarl_st_output_goes_through_the_format_stage(tmp_path, cache_dir):
    """The m4a recordings and segments the importer writes decode and cut to 16 kHz wavs."""
    from espnet_gated.bin.format_wav import format_dir

    root = make_europarl_st(tmp_path / "epst", cache_dir)
    prepare_europarl_st(root, tmp_path / "data", langs=["fra"])
    format_dir(tmp_path / "data/train", tmp_path / "fmt", tmp_path / "wavs")
    [utt] = [u for u in read_data_dir(tmp_path / "fmt") if u.task == "asr"]
    audio, fs = soundfile.read(utt.audio)
    assert fs == 16000 and abs(len(audio) - 1.75 * fs) < 0.02 * fs


# ---------------------------------------------------------------- FLEURS
def test_fleurs_asr_and_st_join_on_repeated_ids_with_cjk(tmp_path):
    root = make_fleurs(tmp_path / "fleurs")
    out = tmp_path / "data"
    counts = prepare_fleurs(root, out, langs=["deu", "cmn_hans_cn"], tasks=["asr", "st_eng"])
    # train: de asr 3 + st_eng 2 (both readers of 1001; 1002 has no English); zho asr 2 + st_eng 1
    assert counts == {"train": 8, "test": 2}
    train = check_dir(out / "train")
    assert texts(train, "deu", "st_eng") == ["Hello world.", "Hello world."]  # the first English reading, once each
    assert texts(train, "zho", "asr") == ["你好，世界。", "早上好。"]
    assert texts(train, "zho", "st_eng") == ["Hello world."]
    utt = "fleurs-cmn_hans_cn-30001-st_eng"
    assert f"{utt} <zho><st_eng><notimestamps> Hello world." in lines(out / "train/text")
    assert f"{utt} 你好，世界。" in lines(out / "train/text.ctc")
    wav = out / "audio/fleurs/de_de/train/10015678931254432101.wav"
    assert read_kaldi_map(out / "train/wav.scp")["fleurs-de_de-10015678931254432101-asr"] == str(wav)
    assert soundfile.info(wav).samplerate == 16000
    assert not (out / "audio/fleurs/en_us").exists(), "a target language needs only its TSV"
    assert texts(check_dir(out / "test"), "deu", "st_eng") == ["Goodbye."]


def test_fleurs_extraction_is_idempotent_and_asr_is_the_default(tmp_path):
    root = make_fleurs(tmp_path / "fleurs")
    out = tmp_path / "data"
    assert prepare_fleurs(root, out, langs=["de_de"]) == {"train": 3, "test": 1}
    assert set(read_kaldi_map(out / "train/utt2task").values()) == {"asr"}
    wav = out / "audio/fleurs/de_de/train/10004088536354799741.wav"
    os.utime(wav, (1, 1))
    (root / "data/de_de/audio/train.tar.gz").unlink()  # everything needed is extracted already
    assert prepare_fleurs(root, out, langs=["de_de"]) == {"train": 3, "test": 1}
    assert wav.stat().st_mtime == 1


def _data_dir_files(out: Path) -> dict:
    """Every file of the data directory ``out`` (Kaldi files and audio) by relative path -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_fleurs_already_extracted_gives_the_same_data_dir_as_the_archives(tmp_path):
    archived, extracted = make_fleurs(tmp_path / "a"), make_fleurs(tmp_path / "x", extracted=True)
    assert not list(extracted.rglob("*.tar.gz")) and (extracted / "data/de_de/audio/train").is_dir()
    options = dict(langs=["deu", "cmn_hans_cn"], tasks=["asr", "st_eng"])
    out = tmp_path / "out"  # the same output path, so that wav.scp can be compared byte for byte
    assert prepare_fleurs(archived, out, **options) == {"train": 8, "test": 2}
    from_archives = _data_dir_files(out)
    shutil.rmtree(out)
    assert prepare_fleurs(extracted, out, **options) == {"train": 8, "test": 2}
    assert _data_dir_files(out) == from_archives
    wav = out / "audio/fleurs/de_de/train/10004088536354799741.wav"
    assert wav.is_symlink() and wav.resolve() == extracted / "data/de_de/audio/train/10004088536354799741.wav"
    # a wav neither extracted nor archived is named with both places
    (extracted / "data/de_de/audio/test/10030009998887776665.wav").unlink()
    (out / "audio/fleurs/de_de/test/10030009998887776665.wav").unlink()
    with pytest.raises(CorpusError, match=r"de_de/audio/test.tar.gz: missing, and .*de_de/audio/test/ does not hold"):
        prepare_fleurs(extracted, out, **options)


def test_fleurs_member_missing_from_the_tar_is_named(tmp_path):
    root = make_fleurs(tmp_path / "fleurs")
    tsv = root / "data/de_de/test.tsv"
    tsv.write_text(tsv.read_text() + "1005\t999.wav\tNeu.\tneu\tn e u |\t8000\tMALE\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"de_de/audio/test.tar.gz: no member named 999.wav"):
        prepare_fleurs(root, tmp_path / "data", langs=["deu"])
    assert not (tmp_path / "data/train").exists()


def test_fleurs_bad_row_names_file_and_line(tmp_path):
    root = make_fleurs(tmp_path / "fleurs")
    tsv = root / "data/en_us/train.tsv"
    tsv.write_text(tsv.read_text() + "1006\t20006.wav\tToo few columns\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"en_us/train.tsv:4: 3 tab-separated fields, expected 7"):
        prepare_fleurs(root, tmp_path / "data", langs=["deu"], tasks=["st_eng"])


# ---------------------------------------------------------------- CoVoST 2
def test_covost2_keeps_quotes_and_na_and_merges_train_covost(tmp_path, cache_dir):
    root = make_covost2(tmp_path / "cv4", cache_dir)
    counts = prepare_covost2(root, tmp_path / "data", langs=["fr"])
    assert counts == {"train": 4, "test": 2}
    train = check_dir(tmp_path / "data/train")
    assert texts(train, "fra", "st_eng") == ['"Yes," he said.', "NA"]
    assert texts(train, "fra", "asr") == ['"Oui", a-t-il dit.', "NA"]
    speaker = f"cv-{CLIENT_A[:16]}"
    utt = f"{speaker}-common_voice_fr_19000001-st_eng"
    assert f'{utt} <fra><st_eng><notimestamps> "Yes," he said.' in lines(tmp_path / "data/train/text")
    assert f'{utt} "Oui", a-t-il dit.' in lines(tmp_path / "data/train/text.ctc")
    assert read_kaldi_map(tmp_path / "data/train/wav.scp")[utt] == str(root / "fr/clips/common_voice_fr_19000001.mp3")
    assert read_kaldi_map(tmp_path / "data/train/utt2spk")[f"cv-{CLIENT_B[:16]}-common_voice_fr_19000002-asr"] == (
        f"cv-{CLIENT_B[:16]}"
    )
    test = check_dir(tmp_path / "data/test")
    assert texts(test, "fra", "st_eng") == ["Hello everyone."]


def test_covost2_clip_missing_from_validated_tsv_is_an_error(tmp_path, cache_dir):
    root = make_covost2(tmp_path / "cv4", cache_dir)
    write_lines(root / "fr/validated.tsv", [CV_HEADER_V4, f"{CLIENT_A}\tcommon_voice_fr_19000001.mp3\tX\t2\t0\t\t\t"])
    with pytest.raises(CorpusError, match=r"covost_v2.fr_en.tsv:3: clip 'common_voice_fr_19000002.mp3' is not in"):
        prepare_covost2(root, tmp_path / "data", tasks=["st_eng"])


def test_covost2_missing_clip_is_named_and_nothing_written(tmp_path, cache_dir):
    root = make_covost2(tmp_path / "cv4", cache_dir)
    clip = root / "fr/clips/common_voice_fr_19000002.mp3"
    clip.unlink()
    with pytest.raises(CorpusError, match=f"{clip}: audio file missing"):
        prepare_covost2(root, tmp_path / "data")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_covost2_translations_in_a_separate_dir(tmp_path, cache_dir):
    root = make_covost2(tmp_path / "cv4", cache_dir)
    covost_dir = tmp_path / "covost"
    covost_dir.mkdir()
    (root / "fr/covost_v2.fr_en.tsv").rename(covost_dir / "covost_v2.fr_en.tsv")
    write_lines(covost_dir / "covost_v2.fr_en.dev.tsv", [COVOST_HEADER])  # get_covost_splits.py output: ignored
    assert prepare_covost2(root, tmp_path / "data", tasks=["st_eng"], covost_dir=covost_dir) == {"train": 2, "test": 1}


# ---------------------------------------------------------------- Common Voice
def test_common_voice_reads_columns_by_name_and_keeps_cjk(tmp_path, cache_dir):
    root = make_common_voice(tmp_path / "cv17", cache_dir)
    counts = prepare_common_voice(root, tmp_path / "data")
    assert counts == {"train": 3, "test": 1}
    train = check_dir(tmp_path / "data/train")
    assert texts(train, "deu", "asr") == ["Das ist ein „Test“.", "NA"]
    assert texts(train, "zho", "asr") == ["我们明天见。"]
    utt = f"cv-{CLIENT_A[:16]}-common_voice_zh-CN_9-asr"
    assert f"{utt} <zho><asr><notimestamps> 我们明天见。" in lines(tmp_path / "data/train/text")
    assert prepare_common_voice(root, tmp_path / "zh", langs=["zh-CN"]) == {"train": 1}


def test_common_voice_missing_clip_and_missing_column(tmp_path, cache_dir):
    root = make_common_voice(tmp_path / "cv17", cache_dir)
    clip = root / "de/clips/common_voice_de_3.mp3"
    clip.unlink()
    with pytest.raises(CorpusError, match=f"{clip}: audio file missing"):
        prepare_common_voice(root, tmp_path / "data", langs=["deu"])
    write_lines(root / "de/test.tsv", ["client_id\tpath\ttext", f"{CLIENT_B}\tcommon_voice_de_3.mp3\tNoch ein Satz."])
    with pytest.raises(CorpusError, match=r"de/test.tsv:1: header lacks column\(s\) sentence"):
        prepare_common_voice(root, tmp_path / "data", langs=["deu"])
    with pytest.raises(CorpusError, match="only the asr task"):
        prepare_common_voice(root, tmp_path / "data", tasks=["st_eng"])
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# ---------------------------------------------------------------- MuST-C
def test_must_c_asr_from_one_pair_and_st_from_each(tmp_path):
    root = make_must_c(tmp_path / "mustc")
    counts = prepare_must_c(root, tmp_path / "data")
    assert counts == {"train": 5, "tst-COMMON": 2}  # asr 2 (en-de only) + st_deu 2 + st_fra 1
    train = check_dir(tmp_path / "data/train")
    assert texts(train, "eng", "asr") == ["Hello.", "Thank you so much."]
    assert texts(train, "eng", "st_fra") == ["Merci beaucoup."]
    utt = "mustc-spk.767-ted_767-00000500-00001750-st_fra"
    assert f"{utt} mustc-en-fr-ted_767 0.500 1.750" in lines(tmp_path / "data/train/segments")
    assert f"{utt} Thank you so much." in lines(tmp_path / "data/train/text.ctc")
    assert read_kaldi_map(tmp_path / "data/train/wav.scp")["mustc-en-fr-ted_767"] == str(
        root / "en-fr/data/train/wav/ted_767.wav"
    )
    check_dir(tmp_path / "data/tst-COMMON")
    assert prepare_must_c(root, tmp_path / "fr", tasks=["asr"], asr_pair="fra") == {"train": 1}
    with pytest.raises(CorpusError, match="no language 'deu'"):
        prepare_must_c(root, tmp_path / "x", langs=["deu"])


def test_must_c_segment_counts_that_disagree(tmp_path):
    root = make_must_c(tmp_path / "mustc")
    write_lines(root / "en-de/data/train/txt/train.de", ["Vielen Dank."])
    with pytest.raises(CorpusError, match=r"segment counts differ \(train.yaml 2, train.en 2, train.de 1\)"):
        prepare_must_c(root, tmp_path / "data", tasks=["st_deu"])
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- CLI
def test_cli_writes_dirs_and_reports_errors_in_one_line(tmp_path, cache_dir, capsys):
    root = make_europarl_st(tmp_path / "epst", cache_dir)
    out = tmp_path / "data"
    assert prepare_main(["europarl_st", "--root", str(root), "--out", str(out), "--langs", "de", "--tasks", "asr"]) == 0
    assert len(lines(out / "train/text")) == 3 and set(read_kaldi_map(out / "train/utt2lang").values()) == {"deu"}
    (root / "de/audios" / f"{SPEECH_DE1}.m4a").unlink()
    with pytest.raises(SystemExit) as error:
        prepare_main(["europarl_st", "--root", str(root), "--out", str(out)])
    assert error.value.code == 1  # bad data
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare: error: ") and f"{SPEECH_DE1}.m4a: audio file missing" in err and "\n" not in err
    with pytest.raises(SystemExit) as error:
        prepare_main(["must_c", "--root", str(tmp_path), "--out", str(out), "--langs", "xx"])
    assert error.value.code == 1 and "unknown language code 'xx'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        prepare_main(["europarl_st", "--root", str(root), "--out", str(out), "--asr_pair", "de"])  # must_c only
    assert error.value.code == 2


# ---------------------------------------------------------------- parsing properties
FIELD = st.text(st.characters(blacklist_characters="\t\n\r", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(FIELD, min_size=3, max_size=3), max_size=5))
def test_tsv_fields_come_back_verbatim(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("tsv") / "x.tsv"
    write_lines(path, ["a\tb\tc"] + ["\t".join(row) for row in rows])
    assert [list(row.values()) for _, row in read_tsv(path, ("a", "b", "c"))] == rows


@settings(max_examples=60, deadline=None)
@given(
    texts_=st.lists(st.text(string.printable.replace("\n", "") + "\u2028\u0085\x0b\x0c 你好", max_size=10), max_size=6)
)
def test_line_aligned_files_keep_their_alignment(tmp_path_factory, texts_):
    """Only \\n ends a line (a stray \\r, U+2028 or form feed must not shift the files against each other)."""
    path = tmp_path_factory.mktemp("lines") / "segments.de"
    path.write_bytes("".join(f"{t}\n" for t in texts_).encode("utf-8"))
    assert read_lines(path) == [t.removesuffix("\r") for t in texts_]
