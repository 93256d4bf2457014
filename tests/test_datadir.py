"""The shared Kaldi data-directory writer and validator."""

import pytest

from espnet_gated.data.datadir import Utterance, read_data_dir, validate_data_dir, write_data_dir


def _utts():
    return [
        Utterance("spk2-b", "spk2", "fra", "st_eng", "The cat.", "Le chat.", "/a/b.wav"),
        Utterance("spk1-a", "spk1", "deu", "asr", "Hallo  Welt", "Hallo Welt", "/a/a.wav"),
    ]


def test_write_then_read_round_trip(tmp_path):
    out = tmp_path / "train"
    assert write_data_dir(out, _utts()) == 2
    assert (out / "text").read_text().splitlines() == [
        "spk1-a <deu><asr><notimestamps> Hallo Welt",
        "spk2-b <fra><st_eng><notimestamps> The cat.",
    ]
    assert (out / "spk2utt").read_text() == "spk1 spk1-a\nspk2 spk2-b\n"
    assert (out / "utt2task").read_text() == "spk1-a asr\nspk2-b st_eng\n"
    back = read_data_dir(out)
    assert [(u.utt_id, u.lang, u.task, u.text, u.text_ctc) for u in back] == [
        ("spk1-a", "deu", "asr", "Hallo Welt", "Hallo Welt"),
        ("spk2-b", "fra", "st_eng", "The cat.", "Le chat."),
    ]


def test_segments_are_written_per_recording(tmp_path):
    utts = [
        Utterance("r1-0001", "r1", "ita", "asr", "ciao", "ciao", "/x/r1.m4a", "r1", 0.5, 2.0),
        Utterance("r1-0002", "r1", "ita", "asr", "mondo", "mondo", "/x/r1.m4a", "r1", 2.0, 3.25),
    ]
    write_data_dir(tmp_path / "d", utts)
    assert (tmp_path / "d" / "wav.scp").read_text() == "r1 /x/r1.m4a\n"
    assert (tmp_path / "d" / "segments").read_text() == "r1-0001 r1 0.500 2.000\nr1-0002 r1 2.000 3.250\n"
    assert read_data_dir(tmp_path / "d")[1].start == 2.0


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("lang", "de", "ISO-639-3"),
        ("task", "translate", "task"),
        ("text", "  ", "empty text"),
        ("utt_id", "a b", "whitespace"),
    ],
)
def test_bad_utterance_writes_nothing(tmp_path, field, value, message):
    out = tmp_path / "train"
    write_data_dir(out, _utts())
    before = (out / "text").read_text()
    bad = _utts()
    setattr(bad[0], field, value)
    with pytest.raises(ValueError, match=message):
        write_data_dir(out, bad)
    assert (out / "text").read_text() == before  # the old directory is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no temporary leftovers


def test_validator_names_file_and_line(tmp_path):
    out = tmp_path / "d"
    write_data_dir(out, _utts())
    (out / "text").write_text("spk1-a Hallo Welt\nspk2-b <fra><st_eng><notimestamps> The cat.\n")
    with pytest.raises(ValueError, match=r"text:1: utterance 'spk1-a'"):
        validate_data_dir(out)
    write_data_dir(out, _utts())
    (out / "text.ctc").write_text("spk1-a Hallo Welt\n")
    with pytest.raises(ValueError, match=r"text.ctc: utterances differ .*missing here: \['spk2-b'\]"):
        validate_data_dir(out)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_bpe_vocabulary_too_large_for_the_text_falls_back_to_sentencepieces_limit(tmp_path, model_type):
    from espnet_gated.data.tokenizer import prefix_symbols, train_bpe

    text = tmp_path / "text"
    text.write_text("guten tag\nbonjour le monde\n" * 20)
    bpe, tokens = train_bpe(text, tmp_path / "bpe", 500, prefix_symbols(["deu", "fra"], ["asr"]), model_type=model_type)
    listed = tokens.read_text().split("\n")[:-1]
    assert bpe.is_file() and 10 < len(listed) < 500
    assert listed[:2] == ["<blank>", "<unk>"] and listed[-1] == "<sop>" and "<deu>" in listed


def test_bpe_vocabulary_smaller_than_the_characters_is_a_clear_error(tmp_path):
    from espnet_gated.data.tokenizer import prefix_symbols, train_bpe

    text = tmp_path / "text"
    text.write_text("abcdefghijklmnopqrstuvwxyz äöüß éèàç\n" * 20)
    with pytest.raises(ValueError, match=r"text: a vocabulary of 20 cannot hold the \d+ characters .* use at least"):
        train_bpe(text, tmp_path / "bpe", 20, prefix_symbols(["deu"], ["asr"]))
    assert not (tmp_path / "bpe" / "bpe.model").exists()
