"""Bad input gets a clear error naming the file, line or utterance (or a counted skip), never
a deep stack trace or a half-written output."""

import logging
import re
import string

import numpy as np
import pytest
import soundfile
import soxr
import torch
import yaml
from conftest import ENCODER_CONF, build
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_gated.bin import decode as decode_cli
from espnet_gated.bin import format_wav as format_wav_cli
from espnet_gated.bin import s2t_train
from espnet_gated.bin import subset_data as subset_cli
from espnet_gated.bin.format_wav import format_dir
from espnet_gated.bin.subset_data import subset_dir
from espnet_gated.data.audio import AudioError, read_audio
from espnet_gated.data.datadir import (
    Utterance,
    check_context_tokens,
    read_data_dir,
    validate_data_dir,
    write_data_dir,
)
from espnet_gated.data.tokenizer import unk_report
from espnet_gated.plugin.tasks import GatedS2TTask, check_model_file, check_training_data, schedule_mismatch
from espnet_gated.utils import read_kaldi_map

FS = 16000


def tone(seconds=0.5, fs=FS, freq=220.0):
    t = np.arange(int(seconds * fs)) / fs
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def utt(utt_id, audio, text="hallo welt", lang="deu", task="asr"):
    return Utterance(utt_id, "spk", lang, task, text, text, str(audio))


# ---------------------------------------------------------------- audio
@pytest.fixture
def bad_audio_dir(tmp_path):
    """A data dir with one good wav and one of every kind of bad audio."""
    a = tmp_path / "audio"
    a.mkdir()
    soundfile.write(a / "good.wav", tone(), FS)
    (a / "empty.wav").write_bytes(b"")
    (a / "garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 4)
    soundfile.write(a / "full.wav", tone(1.0), FS)
    data = (a / "full.wav").read_bytes()
    (a / "truncated.wav").write_bytes(data[: len(data) // 2])  # cut mid-copy
    soundfile.write(a / "nan.wav", np.full(8000, np.nan, np.float32), FS, subtype="FLOAT")
    soundfile.write(a / "silent.wav", np.zeros(8000, np.float32), FS)
    soundfile.write(a / "zero.wav", np.zeros(0, np.float32), FS)
    files = ["good", "empty", "garbage", "truncated", "nan", "silent", "zero", "missing"]
    write_data_dir(tmp_path / "data" / "set", [utt(f"u-{name}", a / f"{name}.wav") for name in files])
    return tmp_path


BAD_REASONS = {
    "u-empty": "audio file is empty",
    "u-garbage": "unreadable or truncated audio",
    "u-truncated": "truncated audio file (header declares 32000 bytes of audio but only",
    "u-nan": "NaN or infinite",
    "u-silent": "silent",
    "u-zero": "zero-length",
    "u-missing": "does not exist",
}


def test_bad_audio_stops_the_format_stage_naming_utterance_and_file(bad_audio_dir):
    out = bad_audio_dir / "dump" / "set"
    with pytest.raises(
        AudioError, match=r"7 bad utterance\(s\) in .*first: utterance 'u-empty'.*empty.wav: audio file is"
    ):
        format_dir(bad_audio_dir / "data" / "set", out, bad_audio_dir / "wavs")
    assert not out.exists()  # nothing half-written
    # the CLI says the same in one line, without a traceback
    with pytest.raises(SystemExit, match=r"^format_wav: error: 7 bad utterance\(s\)"):
        format_wav_cli.main(
            ["--in_root", str(bad_audio_dir / "data"), "--out_root", str(bad_audio_dir / "dump"), "--audio_root",
             str(bad_audio_dir / "wavs"), "--sets", "set"]
        )  # fmt: skip
    assert not out.exists()


def test_bad_audio_is_skipped_counted_and_listed_when_asked(bad_audio_dir, caplog):
    out = bad_audio_dir / "dump" / "set"
    with caplog.at_level(logging.WARNING):
        counts = format_dir(bad_audio_dir / "data" / "set", out, bad_audio_dir / "wavs", on_bad_audio="skip")
    assert counts["kept"] == 1 and counts["bad"] == 7
    assert "skipped 7 bad utterance(s)" in caplog.text
    listed = read_kaldi_map(out / "bad_audio.txt")
    assert set(listed) == set(BAD_REASONS)
    for utt_id, reason in BAD_REASONS.items():
        assert reason in listed[utt_id] and f"'{utt_id}'" in listed[utt_id], (utt_id, listed[utt_id])
    assert list(read_kaldi_map(out / "wav.scp")) == ["u-good"]
    validate_data_dir(out, check_audio=True)


def test_truncated_wav_is_refused_but_a_streamed_header_is_not(tmp_path):
    soundfile.write(tmp_path / "a.wav", tone(1.0), FS)
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-2000])
    with pytest.raises(AudioError, match=r"cut.wav: truncated audio file"):
        read_audio(str(tmp_path / "cut.wav"))
    # a wav written by a streaming tool declares an unknown data size (0xFFFFFFFF): readable
    i = data.index(b"data")
    streamed = data[: i + 4] + b"\xff\xff\xff\xff" + data[i + 8 :]
    (tmp_path / "streamed.wav").write_bytes(streamed)
    audio, _ = read_audio(str(tmp_path / "streamed.wav"))
    assert audio.size == FS


def test_other_rates_are_resampled_and_stereo_is_downmixed(tmp_path, caplog):
    a = tmp_path / "audio"
    a.mkdir()
    left, right = tone(1.0, 44100, 200.0), tone(1.0, 44100, 300.0) * 0.5
    soundfile.write(a / "stereo44k.wav", np.stack([left, right], 1), 44100)
    soundfile.write(a / "mono8k.flac", tone(0.5, 8000), 8000)
    soundfile.write(a / "plain.wav", tone(0.25), FS)
    utts = [utt("a-stereo", a / "stereo44k.wav"), utt("b-8k", a / "mono8k.flac"), utt("c-plain", a / "plain.wav")]
    write_data_dir(tmp_path / "data", utts)
    with caplog.at_level(logging.INFO):
        counts = format_dir(tmp_path / "data", tmp_path / "out", tmp_path / "wavs")
    assert (counts["resampled"], counts["downmixed"]) == (2, 1)
    assert "resampled 2 recording(s) to 16000 Hz, downmixed 1 multi-channel recording(s) to mono" in caplog.text
    wav = read_kaldi_map(tmp_path / "out" / "wav.scp")
    samples = read_kaldi_map(tmp_path / "out" / "utt2num_samples")
    assert samples == {"a-stereo": "16000", "b-8k": "8000", "c-plain": "4000"}
    assert wav["c-plain"] == str(a / "plain.wav")  # already 16 kHz mono: referenced, not copied
    stereo, fs = soundfile.read(wav["a-stereo"], dtype="float32")
    assert fs == FS and stereo.ndim == 1
    expected = soxr.resample((left + right) / 2, 44100, FS)  # the mean of the channels
    assert np.abs(stereo - expected).max() < 2e-4  # 16-bit quantisation


# ---------------------------------------------------------------- data directories
def _good_dir(tmp_path):
    audio = tmp_path / "x.wav"
    soundfile.write(audio, tone(), FS)
    d = tmp_path / "d"
    write_data_dir(d, [utt("u1", audio, "eins"), utt("u2", audio, "zwei"), utt("u3", audio, "drei")])
    return d


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "wav.scp",
            "u1 /a.wav\nu2 /a.wav\nu3 /a.wav\nu4 /a.wav\n",
            r"wav.scp: utterances differ .*only here: \['u4'\]",
        ),
        ("text.prev", "u1 <na>\nu3 <na>\n", r"text.prev: utterances differ .*missing here: \['u2'\]"),
        ("text.ctc", "u1 eins\nu2 zwei\nu2 zwei\n", r"text.ctc:3: duplicate key 'u2'"),
        ("text.ctc", "u1 eins\nu2 \nu3 drei\n", r"text.ctc:2: utterance 'u2' is empty"),
        ("text.prev", "u1 <na>\nu2 <na>\nu3\n", r"text.prev:3: utterance 'u3' is empty \(want '<na>'"),
        ("text", "u1 <deu><asr><notimestamps> eins\nu2 <deu><asr><notimestamps>  \nu3 x\n", r"text:2: utterance 'u2'"),
        ("wav.scp", "u1 /a.wav\nu2\nu3 /a.wav\n", r"wav.scp:2: 'u2' has no audio path"),
        ("text", "", r"text: no utterances"),
    ],
)
def test_inconsistent_or_empty_files_are_named_with_line(tmp_path, name, content, message):
    d = _good_dir(tmp_path)
    validate_data_dir(d)
    (d / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        validate_data_dir(d)


def test_bad_segment_times_are_named(tmp_path):
    utts = [Utterance("r-1", "s", "deu", "asr", "a", "a", "/r.wav", "r", 0.0, 1.0)]
    write_data_dir(tmp_path / "d", utts)
    (tmp_path / "d" / "segments").write_text("r-1 r 2.0 1.0\n")
    with pytest.raises(ValueError, match=r"segments:1: utterance 'r-1': bad entry 'r 2.0 1.0'"):
        validate_data_dir(tmp_path / "d")


def test_long_utterances_are_dropped_with_a_count(tmp_path, caplog):
    d = _good_dir(tmp_path)
    (d / "utt2num_samples").write_text("u1 8000\nu2 800000\nu3 16000\n")
    with caplog.at_level(logging.INFO):
        assert subset_dir(d, tmp_path / "out", min_sec=0.3, max_sec=30) == ["d"]
    assert list(read_kaldi_map(tmp_path / "out" / "d" / "text")) == ["u1", "u3"]
    assert "kept 2 of 3 utterances; dropped 1 by duration (limits: 0.3-30" in caplog.text
    # a training set that loses every utterance is an error, not an empty directory
    with pytest.raises(SystemExit, match=r"subset_data: error: .*no utterance passed the filters \(dropped 3 by dur"):
        subset_cli.main(
            ["--in_root", str(tmp_path), "--out_root", str(tmp_path / "o2"), "--sets", "d", "--max_sec", ".1"]
        )
    assert not (tmp_path / "o2" / "d").exists()
    (d / "utt2num_samples").unlink()
    with pytest.raises(ValueError, match="utt2num_samples: missing .*format_wav"):
        subset_dir(d, tmp_path / "out")


# ---------------------------------------------------------------- tokens
def test_unknown_language_or_task_token_is_named_before_training(tmp_path, vocab):
    text = tmp_path / "text"
    text.write_text(
        "a <deu><asr><notimestamps> hallo\nb <xyz><asr><notimestamps> x\nc <deu><st_xyz><notimestamps> y\n"
        "d <xyz><asr><notimestamps> z\n"
    )
    with pytest.raises(ValueError, match=r"<st_xyz> \(1 utterance\(s\), first .*text:3 'c'\); <xyz> \(2 utterance"):
        check_context_tokens(text, vocab["tokens"])
    text.write_text("a hallo\n")
    with pytest.raises(ValueError, match=r"text:1: utterance 'a' does not start with <lang><task>"):
        check_context_tokens(text, vocab["tokens"])
    # the training entry point refuses before ESPnet builds anything
    text.write_text("b <xyz><asr><notimestamps> x\n")
    (tmp_path / "wav.scp").write_text("b /nonexistent.wav\n")
    data = ["--train_data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound"]
    data += ["--train_data_path_and_name_and_type", f"{text},text,text"]
    cmd = ["--token_list", str(vocab["token_list"]), "--bpemodel", str(vocab["bpemodel"]), "--token_type", "bpe",
           *data, "--output_dir", str(tmp_path / "exp")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"s2t_train: error: .*text: language/task token\(s\) not in --token_list"):
        s2t_train.main(cmd)
    assert not (tmp_path / "exp").exists()


def test_characters_outside_the_bpe_model_are_counted_per_utterance(tmp_path, vocab, caplog):
    text = tmp_path / "text"
    text.write_text(
        "a <deu><asr><notimestamps> hallo welt\nb <deu><asr><notimestamps> straße ☃☃\nc <fra><asr><notimestamps> ☃\n"
    )
    args = GatedS2TTask.get_parser().parse_args(
        ["--token_list", str(vocab["token_list"]), "--bpemodel", str(vocab["bpemodel"]), "--token_type", "bpe",
         "--train_data_path_and_name_and_type", f"{text},text,text"]
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        check_training_data(args)
    assert "2 of 3 utterance(s) contain characters outside the BPE model" in caplog.text
    # consecutive unknown characters make one <unk> piece; the prefix tokens are known symbols
    assert "(3 <unk> of 25 pieces, 12.00%); characters: '☃' x3, 'ß' x1; most <unk> in: b (2), c (1)" in caplog.text


LETTERS = "hallo welt guten tag"  # characters of the conftest vocabulary


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(LETTERS + "ßé☃你\t", min_size=1, max_size=12), min_size=1, max_size=5))
def test_unk_report_blames_only_characters_the_model_lacks(vocab, texts):
    report = unk_report(vocab["bpemodel"], [(f"u{i}", t) for i, t in enumerate(texts)])
    assert report.n_utts == len(texts) and 0 <= report.n_unk <= report.n_pieces
    assert set(report.chars) <= set("ßé☃你")
    for i, t in enumerate(texts):
        assert (f"u{i}" in report.utts_with_unk) == any(c in "ßé☃你" for c in t), t


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(string.printable + "\u2028\x85\x1c äß你好", min_size=1, max_size=15), min_size=1, max_size=4)
)
def test_data_dir_text_round_trips_or_is_refused_cleanly(tmp_path_factory, texts):
    """Any transcript is written and read back whitespace-normalised, or refused by a ValueError
    naming the utterance; a line break inside a text never shifts the files against each other."""
    out = tmp_path_factory.mktemp("fuzz") / "d"
    utts = [Utterance(f"u{i}", "s", "deu", "asr", t, t[::-1], "/a.wav") for i, t in enumerate(texts)]
    try:
        write_data_dir(out, utts)
    except ValueError as e:
        assert "utterance 'u" in str(e)
        assert not out.exists()
        return
    back = read_data_dir(out)
    assert [(u.text, u.text_ctc) for u in back] == [(" ".join(t.split()), " ".join(t[::-1].split())) for t in texts]


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(gate_conf=dict(encoder_modules=["attn", "conv"])), "unknown enc module 'conv' in gate_conf"),
        (dict(gate_conf=dict(decoder_modules=["cross_attn"])), "unknown dec module 'cross_attn'"),
        (dict(gate_conf=dict(encoder_modules="attn")), r"encoder_modules: want a list of module names, got 'attn'"),
        (dict(gate_conf=dict(encoder_layers=[0, 7])), r"enc layer 7 in gate_conf does not exist: the enc has 3"),
        (dict(gate_conf=dict(decoder_layers=["1"])), r"decoder_layers: want a list of layer indices"),
        (dict(gate_conf=dict(hiden_size=8)), r"gate_conf: unknown key\(s\) \['hiden_size'\]; known: .*'hidden_size'"),
        (dict(gate_conf=dict(gate_encoder=False, gate_decoder=False)), "gates no module"),
        (dict(sparsity_conf=dict(encoder_target=1.5)), r"encoder_target must be within \[0, 1\]"),
        (dict(sparsity_conf=dict(decoder_target=-0.1)), r"decoder_target must be within \[0, 1\]"),
        (dict(sparsity_conf=dict(decoder_target=float("nan"))), r"decoder_target must be within \[0, 1\]"),
        (dict(sparsity_conf=dict(decoder_target="half")), r"decoder_target must be a number in \[0, 1\]"),
        (dict(sparsity_conf=dict(target=0.5)), r"sparsity_conf: unknown key\(s\) \['target'\]"),
    ],
)
def test_bad_gate_and_sparsity_config_fails_at_model_construction(vocab, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(vocab["token_list"], model_conf=dict(ctc_weight=0.3, **overrides))


def test_gating_a_module_the_encoder_lacks_is_refused(vocab):
    no_macaron = {**ENCODER_CONF, "macaron_ffn": False}
    gate_conf = dict(encoder_modules=["feed_forward_macaron", "attn"])
    with pytest.raises(ValueError, match=r"'feed_forward_macaron' is gateable in gate_conf but the enc layers have no"):
        build(vocab["token_list"], encoder_conf=no_macaron, model_conf=dict(gate_conf=gate_conf))
    # by default only the modules that exist are gated
    model = build(vocab["token_list"], encoder_conf=no_macaron)
    assert {s.module for s in model.gate_layout.slots if s.side == "enc"} == {"attn", "cgmlp", "feed_forward"}


def test_token_list_that_does_not_match_the_checkpoint_is_refused(tmp_path, vocab):
    model = build(vocab["token_list"])
    torch.save(model.state_dict(), tmp_path / "model.pth")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"token_list": vocab["tokens"]}))
    check_model_file(config, tmp_path / "model.pth")  # the matching pair passes
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({"token_list": vocab["tokens"] + ["<extra>"]}))
    n = len(vocab["tokens"])
    message = rf"model.pth was trained with {n} tokens \(decoder.output_layer.weight\) but the token_list of "
    message += rf".*longer.yaml has {n + 1}"
    with pytest.raises(ValueError, match=message):
        check_model_file(longer, tmp_path / "model.pth")
    # the decoding CLI refuses before starting any job
    test_set = tmp_path / "dump" / "test"
    write_data_dir(test_set, [utt("u1", "/a.wav")])
    cmd = ["--s2t_train_config", str(longer), "--s2t_model_file", str(tmp_path / "model.pth"),
           "--data_root", str(tmp_path / "dump"), "--sets", "test", "--out_dir", str(tmp_path / "decode")]  # fmt: skip
    with pytest.raises(SystemExit, match="^decode: error: .*trained with"):
        decode_cli.main(cmd)
    # a test set in a language the model has no token for
    write_data_dir(test_set, [utt("u1", "/a.wav", lang="xyz")])
    cmd[1] = str(config)
    with pytest.raises(SystemExit, match=r"decode: error: .*test: the model's token list .* has no <xyz>"):
        decode_cli.main(cmd)
    assert not (tmp_path / "decode").exists()
    (tmp_path / "broken.pth").write_bytes((tmp_path / "model.pth").read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.pth: cannot load the model file"):
        check_model_file(config, tmp_path / "broken.pth")


def test_missing_training_text_is_named(tmp_path, vocab):
    data = ["--train_data_path_and_name_and_type", f"{tmp_path / 'no'},text,text"]
    args = GatedS2TTask.get_parser().parse_args(["--token_list", str(vocab["token_list"]), *data])
    with pytest.raises(FileNotFoundError, match=r"--train_data_path_and_name_and_type .*no: file not found"):
        check_training_data(args)


@pytest.mark.parametrize(
    "epochs, iters, last_step, expected",
    [
        (6, 500, 3000, None),
        (4, 500, 3000, "ends at step 3000 but training runs .* = 2000 steps"),
        (6, None, 3000, None),  # steps per epoch depend on the data: not checked
    ],
)
def test_a_linear_schedule_that_ends_elsewhere_than_training_is_reported(epochs, iters, last_step, expected):
    options = [
        "--max_epoch",
        str(epochs),
        "--scheduler",
        "piecewiselinearwarmuplr",
        "--scheduler_conf",
        f"{{warmup_steps_list: [0, 100, {last_step}], warmup_lr_list: [0, 0.002, 0]}}",
    ]
    if iters:
        options += ["--num_iters_per_epoch", str(iters)]
    message = schedule_mismatch(GatedS2TTask.get_parser().parse_args(options))
    if expected is None:
        assert message is None
    else:
        assert re.search(expected, message)
