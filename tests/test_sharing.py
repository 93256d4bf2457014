"""Using and sharing a trained gated model as ESPnet users do: ``from_pretrained`` on a training
directory, a pack and an exported model; packs and their model card; language identification;
decoding jobs through the launcher (local and Slurm, one device per job); the stage engine's
pack and upload stages.

The model is trained here with ESPnet's trainer on audio in which each language has its own
voice (a pitch), so that a tiny model learns to tell the languages apart."""

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from conftest import LANGS, WORDS, data_path_args, tiny_train_config

from espnet_gated.bin import decode as decode_cli
from espnet_gated.bin import s2t_inference
from espnet_gated.data.datadir import Utterance, write_data_dir
from espnet_gated.decoding.inference import GatedSpeech2Text
from espnet_gated.decoding.language_id import candidate_languages
from espnet_gated.plugin.tasks import GatedS2TTask
from espnet_gated.sharing.archive import PackError, unpack, upload
from espnet_gated.sharing.export import export
from espnet_gated.sharing.init_from import init_from
from espnet_gated.sharing.pack import pack
from espnet_gated.utils import read_kaldi_map

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "egs2" / "TEMPLATE" / "s2t1" / "s2t.sh"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: each language's voice: the pitch (Hz) of its speakers
PITCH = {"deu": 140.0, "fra": 280.0, "ita": 560.0, "eng": 1100.0}
DECODE = dict(beam_size=2, ctc_weight=0.3, maxlenratio=0.3, nbest=1)
TEST_SETS = [f"test_{lang}_asr" for lang in LANGS]
MODEL = "valid.acc.ave.pth"


def voice(path: Path, lang: str, rng: np.random.Generator) -> Path:
    """About a second of "speech" in the language's voice: three to five syllables (a harmonic tone
    at the language's pitch, +-5%, with vibrato) between pauses, and noise."""
    n = int(16000 * rng.uniform(0.8, 1.2))
    t = np.arange(n) / 16000
    f0 = PITCH[lang] * rng.uniform(0.95, 1.05) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    syllables = rng.integers(3, 6)
    envelope = np.clip(np.sin(np.pi * syllables * t / t[-1]), 0, None) ** 2
    tone = sum(0.1 / k * np.sin(k * phase) for k in (1, 2, 3))
    audio = envelope * tone + 0.003 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.astype(np.float32), 16000)
    return path


def utterances(root: Path, prefix: str, per_lang: int, seed: int):
    rng, words = np.random.default_rng(seed), random.Random(seed)
    utts = []
    for lang in LANGS:
        for i in range(per_lang):
            utt, text = f"{prefix}_{lang}_{i:02d}", " ".join(words.choice(WORDS) for _ in range(3))
            wav = voice(root / f"{utt}.wav", lang, rng)
            utts.append(Utterance(utt, f"spk_{lang}", lang, "asr", text, text, str(wav)))
    return utts


@pytest.fixture(scope="module")
def trained(tmp_path_factory, vocab):  # the tests that use it are marked slow
    """A gated model trained by ESPnet's trainer in a recipe-like layout, and its test sets."""
    root = tmp_path_factory.mktemp("sharing")
    write_data_dir(root / "dump/raw/train", utterances(root / "wavs", "train", 10, seed=0))
    for lang in LANGS:
        test = [u for u in utterances(root / "wavs", "test", 3, seed=1) if u.lang == lang]
        samples = {u.utt_id: str(soundfile.info(u.audio).frames) for u in test}
        write_data_dir(root / f"dump/raw/test_{lang}_asr", test, extra_files={"utt2num_samples": samples})
    (root / "dump/raw/test_sets.txt").write_text("".join(f"{name}\n" for name in TEST_SETS))
    config = tiny_train_config(
        dict(controller="penalty", alpha=1.0, encoder_target=0.25, decoder_target=None),
        optim_conf=dict(lr=0.01),
        batch_size=8,
        max_epoch=24,
        keep_nbest_models=3,
        num_att_plot=0,
        use_matplotlib=False,
        use_tensorboard=False,
    )
    (root / "conf").mkdir()
    (root / "conf/train.yaml").write_text(yaml.safe_dump(config))
    exp = root / "exp/s2t_train"
    data = data_path_args(root / "dump/raw/train", shape_files=True)  # validated on it: valid.acc.ave is late
    GatedS2TTask.main(
        cmd=[
            *("--config", str(root / "conf/train.yaml"), "--token_type", "bpe"),
            *("--token_list", str(vocab["token_list"]), "--bpemodel", str(vocab["bpemodel"])),
            *data,
            *("--output_dir", str(exp), "--ngpu", "0"),
        ]
    )
    assert (exp / MODEL).is_file() and len(list(exp.glob("*.pth"))) > 2  # several: from_pretrained picks one
    return {"root": root, "exp": exp, "vocab": vocab}


def wav_scp(trained, name: str) -> Path:
    return trained["root"] / "dump/raw" / name / "wav.scp"


def inference_cli(trained, name: str, out: Path, *model_args: str, lang: str = None, task: str = "asr") -> dict:
    """ESPnet-style ``s2t_inference`` of one test set: its 1best_recog files by name."""
    lang = lang or name.split("_")[1]
    args = [*model_args, "--data_path_and_name_and_type", f"{wav_scp(trained, name)},speech,sound"]
    args += ["--lang_sym", lang, "--task_sym", task, "--output_dir", str(out)]
    for key, value in DECODE.items():
        args += [f"--{key}", str(value)]
    s2t_inference.main(args)
    return {p.name: read_kaldi_map(p) for p in (out / "1best_recog").iterdir()}


def gated_args(trained) -> list:
    exp = trained["exp"]
    return ["--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / MODEL)]


def decode_each(speech2text: GatedSpeech2Text, trained, name: str, **call) -> dict:
    """token and text of every utterance of a test set, decoded one at a time."""
    tokens, texts = {}, {}
    for utt, path in sorted(read_kaldi_map(wav_scp(trained, name)).items()):
        text, token, *_ = speech2text(soundfile.read(path, dtype="float32")[0], **call)[0]
        tokens[utt], texts[utt] = " ".join(token), text
    return {"token": tokens, "text": texts}


def same_hypotheses(decoded: dict, reference: dict) -> None:
    assert decoded["token"] == reference["token"]
    assert decoded["text"] == reference["text"]
    assert any(len(t.split()) > 2 for t in reference["token"].values()), "the model should say something"


# ---------------------------------------------------------------- language identification
@pytest.mark.slow
def test_language_identification_on_the_languages_it_was_trained_on(trained, tmp_path):
    exp = trained["exp"]
    s2t = GatedSpeech2Text(str(exp / "config.yaml"), str(exp / MODEL), lang_sym="<deu>", task_sym="<asr>", **DECODE)
    assert candidate_languages(s2t.s2t_model) == [f"<{lang}>" for lang in LANGS]
    for name in TEST_SETS:
        lang = name.split("_")[1]
        speeches = [soundfile.read(p, dtype="float32")[0] for p in read_kaldi_map(wav_scp(trained, name)).values()]
        ranked = s2t.identify_language(speeches)
        assert [r[0][0] for r in ranked] == [f"<{lang}>"] * len(speeches), (name, ranked)
        assert all(abs(sum(p for _, p in r) - 1) < 1e-4 for r in ranked)
        # decoding with the identified language is decoding with that language given (and its mask)
        given = decode_each(s2t, trained, name, lang_sym=f"<{lang}>")
        identified = decode_each(s2t, trained, name, lang_sym="none")
        assert identified == given
        assert s2t.decode(speeches[0], lang_sym="none").langs == [f"<{lang}>"]
        batched = s2t.decode_batch(speeches, lang_sym="none")
        assert batched.langs == [f"<{lang}>"] * len(speeches)
        assert [" ".join(r[0][1]) for r in batched.nbests] == list(given["token"].values())

    # the command line writes the identified language next to the hypothesis
    name = TEST_SETS[1]
    out = inference_cli(trained, name, tmp_path / "lid", *gated_args(trained), lang="none")
    reference = inference_cli(trained, name, tmp_path / "given", *gated_args(trained))
    assert out["lang"] == {utt: name.split("_")[1] for utt in reference["token"]}
    assert out["token"] == reference["token"] and out["gates"] == reference["gates"]
    assert "lang" not in reference


# ---------------------------------------------------------------- from_pretrained, packs, exports
@pytest.mark.slow
def test_from_pretrained_on_the_training_dir_its_pack_and_an_export_gives_the_hypotheses_of_s2t_inference(
    trained, tmp_path
):
    name = TEST_SETS[0]
    call = dict(lang_sym="<deu>", task_sym="<asr>")
    reference = inference_cli(trained, name, tmp_path / "ref", *gated_args(trained))
    s2t = GatedSpeech2Text.from_pretrained(str(trained["exp"]), **DECODE)  # picks valid.acc.ave.pth of several
    assert type(s2t) is GatedSpeech2Text
    same_hypotheses(decode_each(s2t, trained, name, **call), reference)

    results = tmp_path / "results"  # what stage 13 leaves: RESULTS.md, scores.json, usage heatmaps
    results.mkdir()
    scores = [dict(test_set=name, lang="deu", task="asr", metric="wer", value=12.5, n_utts=3)]
    (results / "scores.json").write_text(json.dumps(scores))
    (results / "RESULTS.md").write_text(
        "# Results\n\n## Scores\n\n| test set | wer |\n|---|---|\n| test_deu_asr | 12.5 |\n"
    )
    (results / "usage_deu_asr.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    zip_path = pack(trained["exp"] / "config.yaml", trained["exp"] / MODEL, tmp_path / "s2t_train.zip", results)
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        card = z.read("README.md").decode()
    assert {"meta.yaml", "exp/s2t_train/config.yaml", f"exp/s2t_train/{MODEL}", "data/token_list/bpe.model",
            "data/token_list/tokens.txt", "exp/s2t_train/results/scores.json"} <= names  # fmt: skip
    assert "| test_deu_asr | deu | asr | wer | 12.5 | 3 |" in card and "| test_deu_asr | 12.5 |" in card
    assert "![usage_deu_asr](exp/s2t_train/results/usage_deu_asr.png)" in card
    assert 'GatedSpeech2Text.from_pretrained("s2t_train.zip"' in card

    elsewhere = tmp_path / "colleague"  # the pack alone, moved to another machine
    elsewhere.mkdir()
    shutil.copy(zip_path, elsewhere)
    from_zip = GatedSpeech2Text.from_pretrained(str(elsewhere / "s2t_train.zip"), **DECODE)
    same_hypotheses(decode_each(from_zip, trained, name, **call), reference)
    assert (elsewhere / "s2t_train" / "meta.yaml").is_file()  # unpacked next to the zip, once
    packed = inference_cli(trained, name, tmp_path / "cli_zip", "--model_tag", str(elsewhere / "s2t_train.zip"))
    assert packed["token"] == reference["token"] and packed["gates"] == reference["gates"]
    packed = inference_cli(trained, name, tmp_path / "cli_model_file", "--s2t_model_file", str(zip_path))
    assert packed["token"] == reference["token"]

    # ESPnet's own unpacking reads the pack too (paths rewritten to absolute ones)
    from espnet2.main_funcs.pack_funcs import unpack as espnet_unpack

    files = espnet_unpack(zip_path, tmp_path / "espnet_unpacked")
    assert set(files) == {"s2t_model_file", "s2t_train_config"}
    same_hypotheses(decode_each(GatedSpeech2Text(**files, **call, **DECODE), trained, name), reference)

    # init_from starts from the pack: the same model, ready to fine-tune
    init = init_from(zip_path, tmp_path / "init")
    tuned_start = GatedSpeech2Text(str(init["config"]), str(init["init_param"]), **DECODE)
    same_hypotheses(decode_each(tuned_start, trained, name, **call), reference)

    # an exported model directory stands alone and decodes like s2t_inference on it
    export(
        trained["exp"] / "config.yaml", trained["exp"] / MODEL, tmp_path / "export", mask="enc=1011.1101 dec=011.101"
    )
    moved = tmp_path / "moved_export"
    shutil.move(tmp_path / "export", moved)
    assert {"config.yaml", "model.pth", "tokens.txt", "bpe.model"} <= {p.name for p in moved.iterdir()}
    exported = inference_cli(trained, name, tmp_path / "cli_export", "--model_tag", str(moved))
    same_hypotheses(
        decode_each(GatedSpeech2Text.from_pretrained(str(moved), **DECODE), trained, name, **call), exported
    )
    assert set(exported["gates"].values()) == {"enc=1011.1101 dec=011.101"}


def test_pack_errors_are_named(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PackError, match="bad.zip: cannot extract"):
        unpack(bad)
    with zipfile.ZipFile(tmp_path / "nometa.zip", "w") as z:
        z.writestr("exp/x/config.yaml", "{}")
    with pytest.raises(PackError, match="no meta.yaml"):
        unpack(tmp_path / "nometa.zip")
    with pytest.raises(ValueError, match=r"from_pretrained\('.*missing.zip'\): .*no such model"):
        GatedSpeech2Text.from_pretrained(str(tmp_path / "missing.zip"))
    with pytest.raises(PackError, match="a pack is a .zip file"):
        pack(tmp_path / "exp/config.yaml", tmp_path / "exp" / MODEL, tmp_path / "pack.tar")


@pytest.mark.slow
def test_upload_without_network_or_library_says_so_and_leaves_the_pack_ready(trained, tmp_path, monkeypatch):
    zip_path = pack(trained["exp"] / "config.yaml", trained["exp"] / MODEL, tmp_path / "m.zip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    if __import__("importlib").util.find_spec("huggingface_hub") is not None:
        with pytest.raises(
            PackError, match=r"could not upload to user/gated: this machine is offline.*the pack is ready"
        ):
            upload(zip_path, "user/gated", tmp_path / "hf_user_gated")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(PackError, match=r'needs huggingface_hub \(pip install "espnet-gated\[hub\]"\)'):
        upload(zip_path, "user/gated", tmp_path / "hf_user_gated")
    assert zip_path.is_file() and (tmp_path / "hf_user_gated/m/README.md").is_file()


# ---------------------------------------------------------------- decoding jobs: launcher and stage engine
FAKE_SBATCH = """#!/usr/bin/env bash
# A stand-in for Slurm's sbatch, taking the options the launcher uses in their real format: it records
# its command line and the batch script, then runs the array's tasks one after the other as Slurm
# would (SLURM_ARRAY_TASK_ID, --output with %a), and returns when they are done, as --wait does.
echo "$*" >> "${FAKE_SBATCH_RECORD}"
script=${!#}
cp "${script}" "${FAKE_SBATCH_RECORD}.script"
for arg in "$@"; do
    case "${arg}" in
        --array=*) array=${arg#--array=} ;;
        --output=*) output=${arg#--output=} ;;
    esac
done
rc=0
for ((task = ${array%-*}; task <= ${array#*-}; task++)); do
    SLURM_ARRAY_TASK_ID=${task} SLURM_ARRAY_JOB_ID=4242 bash "${script}" > "${output//%a/${task}}" 2>&1 || rc=$?
done
echo 4242
exit ${rc}
"""


def make_recipe(root: Path, trained=None) -> Path:
    """A recipe directory as stages 1-11 leave it: the trained model and its test sets (without
    ``trained``: only the files the engine reads before it starts a job)."""
    (root / "local").mkdir(parents=True)
    (root / "local/data.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    (root / "local/data.sh").chmod(0o755)
    (root / "conf").mkdir()
    (root / "conf/decode.yaml").write_text(yaml.safe_dump({**DECODE, "batch_size": 1}))
    (root / "conf/sweep.yaml").write_text("max_epoch: 1\n")
    (root / "data").mkdir()
    if trained is None:
        (root / "conf/train.yaml").write_text("max_epoch: 1\n")
        (root / "dump/raw").mkdir(parents=True)
        (root / "dump/raw/test_sets.txt").write_text("".join(f"{name}\n" for name in TEST_SETS))
        return root
    shutil.copy(trained["root"] / "conf/train.yaml", root / "conf/train.yaml")
    (root / "dump").symlink_to(trained["root"] / "dump")
    (root / "exp/s2t_train").mkdir(parents=True)
    for name in ("config.yaml", MODEL):
        shutil.copy(trained["exp"] / name, root / "exp/s2t_train" / name)
    return root


def run_engine(recipe: Path, *args, env=None):
    return subprocess.run(
        ["bash", str(ENGINE), "--python", sys.executable, *map(str, args)],
        cwd=recipe, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


@pytest.mark.slow
def test_decoding_jobs_on_slurm_then_pack_and_upload_offline(trained, tmp_path):
    recipe = make_recipe(tmp_path / "recipe", trained)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    record = tmp_path / "sbatch.calls"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SBATCH_RECORD": str(record), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    # no reference trained in stage 11 (the gated model with every module kept stands in for it)
    proc = run_engine(recipe, "--stage", 12, "--stop_stage", 16, "--nj", 2, "--decode_cmd", "slurm --partition cpu",
                      "--hf_repo", "user/gated-tiny", "--train_reference", "false", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = recipe / "exp/s2t_train"
    # stage 12: one array job of two tasks, each decoding its shard, then the merge
    (call,) = record.read_text().splitlines()
    assert "--array=1-2" in call and "--wait" in call and "--partition cpu" in call and "--gres" not in call
    script = Path(f"{record}.script").read_text()
    assert "espnet_gated.bin.decode" in script and '--job "${SLURM_ARRAY_TASK_ID}"' in script
    for job in (1, 2):
        assert "utts (" in (exp / f"decode/logs/launch.{job}.log").read_text()  # the task's console (--output)
        assert "utts (" in (exp / f"decode/logs/decode.{job}.log").read_text()
    reference = inference_cli(trained, TEST_SETS[2], tmp_path / "ref", *gated_args(trained))
    assert read_kaldi_map(exp / f"decode/{TEST_SETS[2]}/1best_recog/token") == reference["token"]
    # stage 13, 14: the pack's model card holds the scores of scores.json and RESULTS.md
    scores = json.loads((exp / "results/scores.json").read_text())
    zip_path = exp / "s2t_train_valid.acc.ave.zip"
    with zipfile.ZipFile(zip_path) as z:
        card = z.read("README.md").decode()
        assert {f"exp/s2t_train/results/usage_{lang}_asr.png" for lang in LANGS} <= set(z.namelist())
    for row in scores:
        assert f"| {row['test_set']} | {row['lang']} | {row['task']} | {row['metric']} | {row['value']:.1f} |" in card
    results_md = (exp / "results/RESULTS.md").read_text()
    table_rows = [line for line in results_md.splitlines() if line.startswith("|")]
    assert table_rows and all(line in card for line in table_rows)
    assert 'from_pretrained("user/gated-tiny"' in card
    for lang in LANGS:  # the heatmaps, linked from the pack's root (where the hub shows the card)
        assert card.count(f"](exp/s2t_train/results/usage_{lang}_asr.png)") == 1
    # stage 16 offline: says so, leaves the pack ready, no marker (a later run uploads)
    hub_installed = importlib.util.find_spec("huggingface_hub") is not None  # an extra: "espnet-gated[hub]"
    why = "could not upload to user/gated-tiny" if hub_installed else "needs huggingface_hub"
    assert why in proc.stderr and "the pack is ready" in proc.stderr
    assert (exp / ".stage14.done").is_file() and not (exp / ".stage16.done").exists()
    assert (recipe / "exp/hf_user_gated-tiny/s2t_train_valid.acc.ave/README.md").read_text() == card
    proc = run_engine(recipe, "--stage", 14, "--stop_stage", 14, "--hf_repo", "user/gated-tiny",
                      "--train_reference", "false", env=env)  # fmt: skip
    assert proc.returncode == 0 and "already done" in proc.stderr


def test_one_device_per_decoding_job_in_the_command_lines_the_engine_builds(tmp_path):
    recipe = make_recipe(tmp_path / "recipe")
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}  # two GPUs of the machine
    proc = run_engine(recipe, "--stage", 12, "--stop_stage", 12, "--nj", 2, "--ngpu", 1,
                      "--decode_cmd", "local --dry_run", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [line for line in proc.stdout.splitlines() if line.startswith("job ")]
    assert len(jobs) == 2
    for k, line in enumerate(jobs):
        assert line.startswith(f"job {k + 1}: CUDA_VISIBLE_DEVICES={k} ")
        assert f"--job {k + 1}" in line and "--ngpu 1" in line and "--nj 2" in line
    assert "nothing decoded" in proc.stderr and not (recipe / "exp/s2t_train/decode").exists()
    # on Slurm, each array task asks for its own GPU (Slurm sets CUDA_VISIBLE_DEVICES per task)
    proc = run_engine(recipe, "--stage", 12, "--stop_stage", 12, "--nj", 2, "--ngpu", 1,
                      "--decode_cmd", "slurm --dry_run --time 1:00:00")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sbatch = next(line for line in proc.stdout.splitlines() if line.startswith("sbatch "))
    assert "--array=1-2" in sbatch and "--gres=gpu:1" in sbatch and "--time 1:00:00" in sbatch
    assert "--job-name=decode" in sbatch and "--output=exp/s2t_train/decode/logs/launch.%a.log" in sbatch
    # training as one Slurm job of two nodes that srun's the trainer inside
    proc = run_engine(recipe, "--stage", 11, "--stop_stage", 11, "--ngpu", 2, "--num_nodes", 2,
                      "--train_cmd", "slurm --dry_run", "--tag", "s2t_slurm")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (recipe / "exp/s2t_slurm/train.log").read_text()
    assert (
        "--gres=gpu:2" in log and "--nodes=2" in log and "--ntasks-per-node=1" in log and "--job-name=s2t_train" in log
    )
    assert "srun --nodes 2 --ntasks-per-node 1" in log and "espnet_gated.bin.s2t_train" in log


def test_local_launcher_devices_logs_and_failures(tmp_path, monkeypatch):
    from espnet_gated.cli import UsageError
    from espnet_gated.recipe.launcher import LaunchError, job_devices, launch, local_jobs

    assert job_devices(2, 1, ["0", "1"]) == ["0", "1"]
    assert job_devices(3, 1, ["4", "7"]) == ["4", "7", "4"]  # more jobs than devices: shared, warned
    assert job_devices(2, 2, ["0", "1", "2", "3"]) == ["0,1", "2,3"]
    with pytest.raises(LaunchError, match="--gpu 1 but 0 GPU"):
        job_devices(2, 1, [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    jobs = local_jobs(["echo", "part", "JOB", "of", "JOBS"], 1, 2, str(tmp_path / "log.JOB"), gpus_per_job=1)
    assert [j.command for j in jobs] == [["echo", "part", "1", "of", "JOBS"], ["echo", "part", "2", "of", "JOBS"]]
    assert [j.env["CUDA_VISIBLE_DEVICES"] for j in jobs] == ["2", "3"]
    script = (
        "import os, sys; print('job', sys.argv[1], os.environ['CUDA_VISIBLE_DEVICES']); sys.exit(int(sys.argv[1]) - 1)"
    )
    with pytest.raises(LaunchError, match=r"1 of 2 job\(s\) failed: job 2 \(exit code 1\): .*log\.2"):
        launch(["local", "--gpu", "1", "JOB=1:2", str(tmp_path / "log.JOB"), sys.executable, "-c", script, "JOB"])
    assert "job 1 2\n" in (tmp_path / "log.1").read_text() and "job 2 3\n" in (tmp_path / "log.2").read_text()
    assert "(exit code 1)" in (tmp_path / "log.2").read_text()
    with pytest.raises(UsageError, match="only the slurm backend passes options on"):
        launch(["local", "--partition", "x", "JOB=1:1", "log", "true"])


@pytest.mark.slow
def test_decode_job_and_merge(trained, tmp_path):
    """--job decodes one shard, --merge refuses while a shard is missing and then merges them like one run."""
    exp = trained["exp"]
    config = tmp_path / "decode.yaml"
    config.write_text(yaml.safe_dump({**DECODE, "batch_size": 1}))
    common = ["--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / MODEL),
              "--decode_config", str(config), "--data_root", str(trained["root"] / "dump/raw"),
              "--sets", TEST_SETS[3], "--nj", "2"]  # fmt: skip
    out = tmp_path / "decode"
    decode_cli.main([*common, "--out_dir", str(out), "--job", "2"])
    with pytest.raises(SystemExit, match=r"1 shard\(s\) not decoded, e.g. .*split2/0"):
        decode_cli.main([*common, "--out_dir", str(out), "--merge", "true"])
    decode_cli.main([*common, "--out_dir", str(out), "--job", "1"])
    decode_cli.main([*common, "--out_dir", str(out), "--merge", "true"])
    with pytest.raises(SystemExit, match=r"--job 3 is not one of the jobs 1..2"):
        decode_cli.main([*common, "--out_dir", str(out), "--job", "3"])
    reference = inference_cli(trained, TEST_SETS[3], tmp_path / "ref", *gated_args(trained))
    assert read_kaldi_map(out / TEST_SETS[3] / "1best_recog/token") == reference["token"]


def test_recorded_paths_of_a_sweep_run_resolve_from_the_recipe_dir(tmp_path, monkeypatch):
    """Stage 17's runs sit one level deeper (exp/<tag>_sweep/<run>/config.yaml): the config's recipe-relative
    paths resolve from the recipe dir above, from wherever the tool runs; a path nowhere is named."""
    from espnet_gated.sharing.locate import PretrainedError, resolve_recorded

    recipe = tmp_path / "recipe"
    bpe = recipe / "data/token_list/unigram1000/bpe.model"
    bpe.parent.mkdir(parents=True)
    bpe.write_bytes(b"spm")
    run = recipe / "exp/s2t_train_sweep/dec_budget"
    run.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    recorded = "data/token_list/unigram1000/bpe.model"
    assert resolve_recorded(recorded, run, run / "config.yaml", "bpemodel") == bpe
    with pytest.raises(PretrainedError, match=r"config\.yaml: bpemodel 'data/other\.model' not found"):
        resolve_recorded("data/other.model", run, run / "config.yaml", "bpemodel")
