"""Scoring against hand-computed WER/CER and sacrebleu's own BLEU/chrF; averages; input checks."""

import json
import logging
from pathlib import Path
from typing import Dict, Optional

import pytest
from sacrebleu.metrics import BLEU, CHRF

from espnet_gated.recipe.report import make_results
from espnet_gated.recipe.scoring import (
    SCORE_KEYS,
    bleu_scorer,
    load_normalizers,
    normalize,
    read_hypotheses,
    read_test_set,
    score_sets,
)

SAMPLES = 16000


def write_ref_set(root: Path, name: str, lang: str, task: str, refs: Dict[str, str], samples: int = SAMPLES):
    """A reference test set in the decoding stage's layout."""
    d = root / name
    d.mkdir(parents=True)
    files = {
        "text": {u: f"<{lang}><{task}><notimestamps> {t}" for u, t in refs.items()},
        "utt2lang": dict.fromkeys(refs, lang),
        "utt2task": dict.fromkeys(refs, task),
        "utt2num_samples": dict.fromkeys(refs, str(samples)),
    }
    for file, table in files.items():
        (d / file).write_text("".join(f"{u} {v}\n" for u, v in sorted(table.items())), encoding="utf-8")


def write_decode_set(
    decode_dir: Path,
    name: str,
    hyps: Dict[str, str],
    prefix: str = "<deu> <asr> <notimestamps>",
    gates: Optional[Dict[str, str]] = None,
    timing: Optional[Dict[str, float]] = None,
):
    """ESPnet's 1best_recog files (``token`` derived from the words) plus our gates and timing.json."""
    best = decode_dir / name / "1best_recog"
    best.mkdir(parents=True)
    (best / "text_nospecial").write_text("".join(f"{u} {h}\n" for u, h in hyps.items()), encoding="utf-8")
    tokens = {u: " ".join([prefix, *(f"▁{w}" for w in h.split())]) for u, h in hyps.items()}
    (best / "token").write_text("".join(f"{u} {t}\n" for u, t in tokens.items()), encoding="utf-8")
    if gates is not None:
        (best / "gates").write_text("".join(f"{u} {g}\n" for u, g in gates.items()))
    if timing is not None:
        (decode_dir / name / "timing.json").write_text(json.dumps(timing))


def scores_of(rows, metric):
    return {r["test_set"]: r for r in rows if r["metric"] == metric}


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("  Hallo, Welt!  Wie geht's?") == "hallo welt wie geht s"
    assert normalize("«Ça va» — oui…") == "ça va oui"
    assert normalize("我爱猫。") == "我爱猫"
    assert normalize("e\u0301t\u00e9") == "\u00e9t\u00e9"  # decomposed and composed accents agree


def test_wer_matches_hand_count_and_ignores_case_and_punctuation(tmp_path, caplog):
    refs = {"u1": "Der Hund, bellt laut.", "u2": "Guten Morgen!", "u3": "Ja."}
    # u1: "laut" deleted (1); u2: "morgen"->"abend" and "liebe" inserted (2); u3: no hypothesis -> deleted (1)
    hyps = {"u1": "der hund bellt", "u2": "GUTEN Abend liebe"}
    write_ref_set(tmp_path / "ref", "test_deu_asr", "deu", "asr", refs)
    write_decode_set(tmp_path / "dec", "test_deu_asr", hyps)
    ts = read_test_set(tmp_path / "ref", "test_deu_asr")
    assert ts.refs["u1"] == "Der Hund, bellt laut." and (ts.lang, ts.task) == ("deu", "asr")
    with caplog.at_level(logging.WARNING):
        read = read_hypotheses(tmp_path / "dec/test_deu_asr/1best_recog/text_nospecial", ts.refs)
    assert read["u3"] == "" and "1 of 3 utterances have no hypothesis" in caplog.text and "u3" in caplog.text
    report = score_sets([ts], {"test_deu_asr": read}, {})
    assert scores_of(report.rows, "wer")["test_deu_asr"]["value"] == pytest.approx(100 * 4 / 7)
    assert scores_of(report.rows, "wer")["test_deu_asr"]["n_utts"] == 3
    details = report.details["test_deu_asr"]
    assert "=== u2 deu asr wer errors=2 ref_len=2 S=1 D=0 I=1 ===" in details
    assert "=== u3 deu asr wer errors=1 ref_len=1 S=0 D=1 I=0 ===" in details
    assert "REF: der hund bellt laut" in details


def test_cer_for_cjk_ignores_spaces_and_punctuation(tmp_path):
    refs = {"a": "我爱猫。", "b": "今天 很好"}
    hyps = {"a": "我爱狗", "b": "今天很好！"}  # 1 substitution in 7 characters
    write_ref_set(tmp_path / "ref", "test_zho_asr", "zho", "asr", refs)
    ts = read_test_set(tmp_path / "ref", "test_zho_asr")
    report = score_sets([ts], {"test_zho_asr": hyps}, {})
    assert [r["metric"] for r in report.rows] == ["cer", "cer", "cer"]  # set, micro, macro
    assert report.rows[0]["value"] == pytest.approx(100 / 7)


def test_normalizer_config_switches_a_language_to_cer(tmp_path):
    conf = tmp_path / "corpus.yaml"
    conf.write_text("languages:\n  - {code: deu, normalizer: cer, name: German}\n  - {code: fra}\n")
    assert load_normalizers(conf) == {"deu": "cer"}
    write_ref_set(tmp_path / "ref", "t", "deu", "asr", {"u": "ab cd"})
    ts = read_test_set(tmp_path / "ref", "t")
    rows = score_sets([ts], {"t": {"u": "abce"}}, load_normalizers(conf)).rows
    assert rows[0]["metric"] == "cer" and rows[0]["value"] == pytest.approx(25.0)
    conf.write_text("languages:\n  - {code: deu, normalizer: fancy}\n")
    with pytest.raises(ValueError, match=r"corpus.yaml: language 'deu' has normalizer 'fancy'"):
        load_normalizers(conf)


def test_bleu_and_chrf_equal_sacrebleu_with_signature(tmp_path):
    refs = {"s1": "The cat sleeps on the mat.", "s2": "Good morning, my friend!", "s3": "It is raining today."}
    hyps = {"s1": "The cat sleeps on a mat.", "s2": "Good morning my friend!", "s3": "Today it rains."}
    write_ref_set(tmp_path / "ref", "test_deu_st_eng", "deu", "st_eng", refs)
    ts = read_test_set(tmp_path / "ref", "test_deu_st_eng")
    report = score_sets([ts], {"test_deu_st_eng": hyps}, {})
    ordered_hyps, ordered_refs = [hyps[u] for u in sorted(refs)], [refs[u] for u in sorted(refs)]
    bleu, chrf = BLEU(), CHRF()
    assert scores_of(report.rows, "bleu")["test_deu_st_eng"]["value"] == pytest.approx(
        bleu.corpus_score(ordered_hyps, [ordered_refs]).score
    )
    assert scores_of(report.rows, "chrf")["test_deu_st_eng"]["value"] == pytest.approx(
        chrf.corpus_score(ordered_hyps, [ordered_refs]).score
    )
    assert report.signatures["test_deu_st_eng"]["bleu"] == str(bleu.get_signature())
    assert "tok:13a" in report.signatures["test_deu_st_eng"]["bleu"]
    assert "nc:6" in report.signatures["test_deu_st_eng"]["chrf"]


def test_chinese_target_uses_sacrebleus_zh_tokenizer(tmp_path):
    write_ref_set(tmp_path / "ref", "t", "eng", "st_zho", {"u": "我爱我的猫。"})
    ts = read_test_set(tmp_path / "ref", "t")
    report = score_sets([ts], {"t": {"u": "我爱猫。"}}, {})
    assert "tok:zh" in report.signatures["t"]["bleu"]
    expected = BLEU(tokenize="zh").corpus_score(["我爱猫。"], [["我爱我的猫。"]]).score
    assert scores_of(report.rows, "bleu")["t"]["value"] == pytest.approx(expected)


def test_japanese_target_uses_mecab_or_falls_back_to_char_with_a_warning(caplog):
    try:
        BLEU(tokenize="ja-mecab")
        expected = "tok:ja-mecab"
    except RuntimeError:  # sacrebleu[ja] not installed
        expected = "tok:char"
    with caplog.at_level(logging.WARNING):
        scorer = bleu_scorer("jpn")
    scorer.corpus_score(["猫が好き"], [["猫が好き"]])
    assert expected in str(scorer.get_signature())
    assert ("ja-mecab' for 'jpn' is unavailable" in caplog.text) == (expected == "tok:char")


def test_micro_pools_counts_and_macro_averages_sets(tmp_path):
    write_ref_set(tmp_path / "ref", "a", "deu", "asr", {"a1": "eins zwei drei vier"})
    write_ref_set(tmp_path / "ref", "b", "fra", "asr", {"b1": "un"})
    sets = [read_test_set(tmp_path / "ref", n) for n in ("a", "b")]
    hyps = {"a": {"a1": "eins zwei drei fünf"}, "b": {"b1": "deux"}}  # 1/4 and 1/1 errors
    rows = score_sets(sets, hyps, {}).rows
    by_set = scores_of(rows, "wer")
    assert by_set["a"]["value"] == pytest.approx(25.0) and by_set["b"]["value"] == pytest.approx(100.0)
    assert by_set["micro_avg"]["value"] == pytest.approx(100 * 2 / 5)
    assert by_set["macro_avg"]["value"] == pytest.approx(62.5)
    assert by_set["micro_avg"]["lang"] == "all" and by_set["micro_avg"]["task"] == "asr"
    assert by_set["macro_avg"]["n_utts"] == 2


def test_scores_json_follows_the_contract(tmp_path):
    write_ref_set(tmp_path / "ref", "test_deu_asr", "deu", "asr", {"u1": "hallo welt"})
    write_ref_set(tmp_path / "ref", "test_deu_st_eng", "deu", "st_eng", {"u1": "Hello world."})
    write_decode_set(tmp_path / "dec", "test_deu_asr", {"u1": "hallo"})
    write_decode_set(
        tmp_path / "dec", "test_deu_st_eng", {"u1": "Hello world."}, prefix="<deu> <st_eng> <notimestamps>"
    )
    out = tmp_path / "results"
    make_results(tmp_path / "ref", tmp_path / "dec", ["test_deu_asr", "test_deu_st_eng"], out)
    rows = json.loads((out / "scores.json").read_text())
    assert {(r["test_set"], r["metric"]) for r in rows} == {
        *(("test_deu_asr", "wer"), ("test_deu_st_eng", "bleu"), ("test_deu_st_eng", "chrf")),
        *((avg, m) for avg in ("micro_avg", "macro_avg") for m in ("wer", "bleu", "chrf")),
    }
    for row in rows:
        assert tuple(row) == SCORE_KEYS
        assert all(isinstance(row[k], str) for k in SCORE_KEYS[:4])
        assert isinstance(row["value"], float) and isinstance(row["n_utts"], int)
    assert scores_of(rows, "wer")["test_deu_asr"]["value"] == pytest.approx(50.0)
    signatures = json.loads((out / "bleu_signatures.json").read_text())
    assert "tok:13a" in signatures["test_deu_st_eng"]["bleu"]
    assert "REF: Hello world." in (out / "details/test_deu_st_eng.txt").read_text()
    assert "errors=1" in (out / "details/test_deu_asr.txt").read_text()


def test_reference_inconsistencies_name_the_file_and_utterance(tmp_path):
    write_ref_set(tmp_path, "s", "deu", "asr", {"u1": "a", "u2": "b"})
    (tmp_path / "s/utt2lang").write_text("u1 deu\n")
    with pytest.raises(ValueError, match=r"s/utt2lang: no entry for utterance 'u2'"):
        read_test_set(tmp_path, "s")
    (tmp_path / "s/utt2lang").write_text("u1 deu\nu2 fra\n")
    with pytest.raises(ValueError, match=r"utterance 'u2' does not start with <fra><asr><notimestamps>"):
        read_test_set(tmp_path, "s")
    with pytest.raises(FileNotFoundError, match=r"missing/text"):
        read_test_set(tmp_path, "missing")


def test_hypothesis_for_a_foreign_utterance_is_an_error(tmp_path):
    path = tmp_path / "text_nospecial"
    path.write_text("u1 a\nzz b\n")
    with pytest.raises(ValueError, match=r"text_nospecial: utterance 'zz' is not in the reference"):
        read_hypotheses(path, {"u1": "a"})
