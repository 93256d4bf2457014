"""ESPnet's own trainer and decoding loop run the gated model through our entry points."""

import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml
from conftest import data_path_args, random_sentence, tiny_train_config

from espnet_gated.method.layout import parse_mask

pytestmark = pytest.mark.slow


def write_data_dir(root, utts):
    """Kaldi-style S2T data dir: wav.scp, text (OWSM prefix), text.ctc, text.prev."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {name: open(root / name, "w") for name in ("wav.scp", "text", "text.ctc", "text.prev")}
    for utt, lang, task, sentence in utts:
        wav = root / f"{utt}.wav"
        n = int(16000 * rng.uniform(0.8, 1.3))
        t = np.arange(n) / 16000
        audio = 0.1 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.01 * rng.standard_normal(n)
        soundfile.write(wav, audio.astype(np.float32), 16000)
        files["wav.scp"].write(f"{utt} {wav}\n")
        files["text"].write(f"{utt} <{lang}><{task}><notimestamps> {sentence}\n")
        files["text.ctc"].write(f"{utt} {sentence}\n")
        files["text.prev"].write(f"{utt} <na>\n")
    for f in files.values():
        f.close()


def run(module, *args):
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def proc_args(exp, data, out) -> list:
    """s2t_inference options decoding ``data`` with the model trained in ``exp``."""
    return [
        "--s2t_train_config",
        exp / "config.yaml",
        "--s2t_model_file",
        exp / "2epoch.pth",
        "--data_path_and_name_and_type",
        f"{data / 'wav.scp'},speech,sound",
        "--lang_sym",
        "deu",
        "--task_sym",
        "asr",
        "--beam_size",
        "2",
        "--maxlenratio",
        "-4",
        "--output_dir",
        out,
    ]


def test_espnet_trainer_and_inference_run_the_gated_model(tmp_path, vocab):
    rng = random.Random(0)
    pairs = [("deu", "asr"), ("fra", "st_eng"), ("ita", "asr"), ("eng", "asr")]
    utts = [(f"utt{i:02d}", *pairs[i % 4], random_sentence(rng, 3)) for i in range(8)]
    data = tmp_path / "data"
    write_data_dir(data, utts)
    config = tiny_train_config(
        dict(alpha=1.0, decoder_target=0.5), optim_conf=dict(lr=0.002), batch_size=4, max_epoch=2
    )
    conf = tmp_path / "train.yaml"
    conf.write_text(yaml.safe_dump(config))
    data_args = data_path_args(data)
    common = [
        "--config",
        conf,
        "--token_list",
        vocab["token_list"],
        "--bpemodel",
        vocab["bpemodel"],
        "--token_type",
        "bpe",
        *data_args,
    ]
    stats = tmp_path / "stats"
    run(
        "espnet_gated.bin.s2t_train",
        *common,
        "--collect_stats",
        "true",
        "--train_shape_file",
        data / "wav.scp",
        "--valid_shape_file",
        data / "wav.scp",
        "--output_dir",
        stats,
    )
    exp = tmp_path / "exp"
    shapes = []
    for split in ("train", "valid"):
        for name in ("speech_shape", "text_shape", "text_prev_shape", "text_ctc_shape"):
            shapes += [f"--{split}_shape_file", stats / split / name]
    proc = run("espnet_gated.bin.s2t_train", *common, *shapes, "--output_dir", exp, "--ngpu", "0")
    log = proc.stderr
    assert "sparsity_dec" in log and "loss_sparsity" in log  # ESPnet's reporter logged our stats
    assert (exp / "2epoch.pth").exists() and (exp / "config.yaml").exists()
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["model"] == "gated_espnet" and saved["encoder"] == "gated_e_branchformer"

    out = tmp_path / "decode"
    run("espnet_gated.bin.s2t_inference", *proc_args(exp, data, out))
    gates = dict(line.split(" ", 1) for line in (out / "1best_recog" / "gates").read_text().splitlines())
    texts = dict(
        line.split(" ", 1)[:2] if " " in line else (line, "")
        for line in (out / "1best_recog" / "token").read_text().splitlines()
    )
    assert set(gates) == {u[0] for u in utts} == set(texts)
    for mask in gates.values():
        parsed = parse_mask(mask)
        assert len(parsed["enc"]) == 2 and len(parsed["dec"]) == 2

    # batches of 3 (sorted by length, padded) in bfloat16: every utterance, the gates of float32 one at a time
    out_bf16 = tmp_path / "decode_bf16"
    run("espnet_gated.bin.s2t_inference", *proc_args(exp, data, out_bf16), "--batch_size", "3", "--dtype", "bfloat16")
    gates_bf16 = dict(line.split(" ", 1) for line in (out_bf16 / "1best_recog" / "gates").read_text().splitlines())
    assert gates_bf16 == gates
