"""Reliability at scale: resumed training equals uninterrupted training, interrupted stages
rerun, DDP over gloo (ESPnet's launcher and its stats reduction), deterministic parallel
decoding, and gates that do not depend on batching."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.distributed as dist
import yaml
from conftest import (
    build,
    context_ids,
    data_path_args,
    random_sentence,
    speech_batch,
    tiny_train_config,
)
from espnet2.torch_utils.recursive_op import recursive_average

from espnet_gated.data.datadir import Utterance, write_data_dir
from espnet_gated.plugin.tasks import AtomicCheckpointTrainer, GatedS2TTask, atomic_torch_save
from espnet_gated.utils import atomic_write

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "egs2" / "TEMPLATE" / "s2t1" / "s2t.sh"
PAIRS = [("deu", "asr"), ("fra", "st_eng"), ("ita", "asr"), ("eng", "asr")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_data(root: Path, n: int = 8, seed: int = 0) -> Path:
    """A formatted data dir of ``n`` short utterances (real 16 kHz wavs) over four contexts."""
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    (root / "wavs").mkdir(parents=True)
    utts = []
    for i in range(n):
        lang, task = PAIRS[i % len(PAIRS)]
        samples = int(16000 * np_rng.uniform(0.6, 1.0))
        t = np.arange(samples) / 16000
        audio = 0.1 * np.sin(2 * np.pi * np_rng.uniform(150, 400) * t) + 0.01 * np_rng.standard_normal(samples)
        wav = root / "wavs" / f"utt{i:02d}.wav"
        soundfile.write(wav, audio.astype(np.float32), 16000)
        sentence = random_sentence(rng, 3)
        utts.append(Utterance(f"utt{i:02d}", f"spk{i % 2}", lang, task, sentence, sentence, str(wav)))
    write_data_dir(root / "data", utts)
    return root / "data"


def train_config(path: Path, max_epoch: int = 3) -> Path:
    config = tiny_train_config(
        dict(alpha=1.0, encoder_target=0.3, decoder_target=0.5),
        optim_conf=dict(lr=0.002),
        batch_size=4,
        max_epoch=max_epoch,
        num_att_plot=0,
        use_matplotlib=False,
        use_tensorboard=False,
    )
    path.write_text(yaml.safe_dump(config))
    return path


def train_cmd(config: Path, data: Path, vocab, out: Path):
    cmd = [sys.executable, "-m", "espnet_gated.bin.s2t_train", "--config", str(config)]
    cmd += ["--token_list", str(vocab["token_list"]), "--bpemodel", str(vocab["bpemodel"]), "--token_type", "bpe"]
    cmd += data_path_args(data, shape_files=True)
    return cmd + ["--output_dir", str(out), "--ngpu", "0", "--resume", "true"]


def run_ok(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, **kwargs)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory, vocab):
    """An uninterrupted 3-epoch run of ESPnet's trainer (the reference for the resume test)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_data(root)
    config = train_config(root / "train.yaml")
    run_ok(train_cmd(config, data, vocab, root / "exp"))
    return {"root": root, "data": data, "config": config, "exp": root / "exp"}


def _state(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- resume and atomicity
@pytest.mark.slow
def test_training_killed_after_an_epoch_resumes_to_the_uninterrupted_model(tmp_path, trained, vocab):
    out = tmp_path / "exp"
    cmd = train_cmd(trained["config"], trained["data"], vocab, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / "1epoch.pth").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no epoch finished"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a scheduler would
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "3epoch.pth").exists() and (out / "checkpoint.pth").exists()
    assert not list(out.glob(".*.tmp"))  # no half-written checkpoint left behind

    log = run_ok(cmd).stderr
    assert "The training was resumed using" in log
    resumed, reference = _state(out / "3epoch.pth"), _state(trained["exp"] / "3epoch.pth")
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key  # seeded per epoch, CPU, one thread: bit-exact
    assert int(resumed["gate_predictor.train_steps"]) == 3 * 2  # 3 epochs x 2 batches: the tau schedule resumed
    assert (out / "valid.acc.ave.pth").exists()


def test_checkpoints_are_written_atomically(tmp_path):
    assert GatedS2TTask.trainer is AtomicCheckpointTrainer
    target = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1}, target)
    with atomic_torch_save():
        torch.save({"epoch": 2}, target)
        assert _state(target) == {"epoch": 2}
        with pytest.raises(Exception, match="pickle"):  # a save that dies half-way ...
            torch.save({"epoch": 3, "bad": lambda: None}, target)
    assert _state(target) == {"epoch": 2}  # ... leaves the previous checkpoint intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
    assert torch.save is not None and "atomic" not in torch.save.__qualname__  # restored after the block


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    """Temporary files and dirs are private (0600/0700); what they become must not be."""
    (tmp_path / "plain").write_text("x")
    atomic_write(tmp_path / "atomic", "x")
    with atomic_torch_save():
        torch.save({}, tmp_path / "model.pth")
    write_data_dir(tmp_path / "d", [Utterance("u", "s", "deu", "asr", "a", "a", "/a.wav")])
    plain = (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == plain
    assert (tmp_path / "model.pth").stat().st_mode & 0o777 == plain
    (tmp_path / "plain_dir").mkdir()
    assert (tmp_path / "d").stat().st_mode & 0o777 == (tmp_path / "plain_dir").stat().st_mode & 0o777


FAKE_DATA_SH = """#!/usr/bin/env bash
set -e
echo run >> calls
if [ -f fail_now ]; then echo "data.sh: failing on purpose" >&2; exit 3; fi
if [ -f hang_now ]; then touch hanging; sleep 600; fi
mkdir -p data/train
echo done > data/train/ok
"""


@pytest.mark.slow
def test_stage_engine_redoes_a_failed_or_killed_stage_and_skips_a_finished_one(tmp_path):
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    (recipe / "conf").mkdir()
    (recipe / "conf" / "train.yaml").write_text("{}\n")
    (recipe / "conf" / "decode.yaml").write_text("{}\n")
    # the engine computes every stage's options even when it stops at stage 1; give it the
    # files later stages hash (on a fresh recipe it otherwise exits at stage 10's options)
    (recipe / "conf" / "sweep.yaml").write_text("{}\n")
    (recipe / "data" / "token_list" / "unigram300").mkdir(parents=True)
    (recipe / "data" / "token_list" / "unigram300" / "tokens.txt").write_text("<blank>\n")
    (recipe / "dump" / "raw").mkdir(parents=True)
    (recipe / "dump" / "raw" / "test_sets.txt").write_text("")
    data_sh = recipe / "local" / "data.sh"
    data_sh.write_text(FAKE_DATA_SH)
    data_sh.chmod(0o755)
    cmd = ["bash", str(ENGINE), "--stage", "1", "--stop_stage", "1", "--python", sys.executable]
    marker = recipe / "data" / ".stage1.done"

    def calls():
        return len((recipe / "calls").read_text().splitlines())

    (recipe / "fail_now").touch()
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, env=ENV)
    assert proc.returncode != 0 and "failing on purpose" in proc.stderr
    assert calls() == 1 and not marker.exists()
    (recipe / "fail_now").unlink()

    (recipe / "hang_now").touch()
    proc = subprocess.Popen(
        cmd, cwd=recipe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not (recipe / "hanging").exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    assert calls() == 2 and not marker.exists()  # killed mid-stage: no marker
    (recipe / "hang_now").unlink()

    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert calls() == 3 and marker.exists() and (recipe / "data" / "train" / "ok").exists()

    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert calls() == 3 and "already done" in proc.stderr  # finished stage skipped


@pytest.mark.slow
def test_a_trainer_that_fails_mid_run_stops_the_recipe_even_with_an_old_model_file(tmp_path, vocab):
    """s2t.sh's stage 11 goes by the trainer's exit status, not by the model file an earlier run
    left behind: it says that training failed, shows the tail of train.log, and stage 12 does not run."""
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    (recipe / "local" / "data.sh").write_text("#!/usr/bin/env bash\n")
    (recipe / "local" / "data.sh").chmod(0o755)
    (recipe / "conf").mkdir()
    config = yaml.safe_load(train_config(recipe / "conf" / "train.yaml", max_epoch=2).read_text())
    # 8 utterances in batches of 4: 2 steps per epoch, and a one-cycle schedule of 2 steps,
    # which torch refuses to step a third time: epoch 1 is saved, epoch 2 fails at its first step
    config.update(scheduler="onecyclelr", scheduler_conf=dict(max_lr=0.002, total_steps=2))
    (recipe / "conf" / "train.yaml").write_text(yaml.safe_dump(config))
    (recipe / "conf" / "decode.yaml").write_text("beam_size: 2\n")
    data = make_data(tmp_path / "corpus")
    (recipe / "dump" / "raw").mkdir(parents=True)
    for split in ("train", "dev"):
        (recipe / "dump" / "raw" / split).symlink_to(data)
    (recipe / "dump" / "raw" / "test_sets.txt").write_text("train\n")
    tokens = recipe / "data" / "token_list" / "unigram300"
    tokens.mkdir(parents=True)
    (tokens / "tokens.txt").write_bytes(Path(vocab["token_list"]).read_bytes())
    (tokens / "bpe.model").write_bytes(Path(vocab["bpemodel"]).read_bytes())
    for split in ("train", "valid"):  # unsorted batches read only the keys of the shape files
        (recipe / "exp" / "stats_unigram300" / split).mkdir(parents=True)
        for name in ("speech_shape", "text_shape", "text_prev_shape", "text_ctc_shape"):
            (recipe / "exp" / "stats_unigram300" / split / name).write_bytes((data / "wav.scp").read_bytes())
    exp = recipe / "exp" / "s2t_train"
    exp.mkdir()
    torch.save({}, exp / "valid.acc.ave.pth")  # the model file of an earlier run

    cmd = ["bash", str(ENGINE), "--stage", "11", "--stop_stage", "12", "--python", sys.executable]
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "s2t_train: 1 torch intra-op thread(s) per process (OMP_NUM_THREADS)" in proc.stderr  # shown once
    assert (exp / "1epoch.pth").exists() and not (exp / "2epoch.pth").exists()  # it failed mid-run
    assert "ERROR: training failed (exit status 1); the last lines of exp/s2t_train/train.log:" in proc.stderr
    tail = proc.stderr.split("the last lines of exp/s2t_train/train.log:\n", 1)[1].splitlines()
    assert 1 < len(tail) <= 20 and all(line.startswith("    ") for line in tail)
    assert tail[-1] == "    s2t_train: error: Tried to step 3 times. The specified number of total steps is 2"
    assert (exp / "train.log").read_text().splitlines()[-1] == tail[-1].strip()
    assert not (exp / ".stage11.done").exists()
    assert "stage 12" not in proc.stderr and not (exp / "decode").exists()


# ---------------------------------------------------------------- distributed training
def _batch(model, rows, seed=0):
    """Speech and OWSM-style targets for ``rows`` of a fixed 4-utterance batch."""
    lengths = [16000, 12000, 14000, 9000]
    speech, speech_lengths = speech_batch(lengths, seed=seed)
    g = torch.Generator().manual_seed(seed)
    tl = model.token_list
    words = torch.randint(11, len(tl) - 3, (4, 5), generator=g)
    notime = torch.full((4, 1), tl.index("<notimestamps>"))
    text = torch.cat([context_ids(model, PAIRS), notime, words], 1)
    batch = dict(
        speech=speech,
        speech_lengths=speech_lengths,
        text=text,
        text_lengths=torch.full((4,), text.size(1)),
        text_prev=torch.full((4, 1), tl.index("<na>")),
        text_prev_lengths=torch.ones(4, dtype=torch.long),
        text_ctc=words,
        text_ctc_lengths=torch.full((4,), words.size(1)),
    )
    batch = {k: v[rows] for k, v in batch.items()}
    batch["speech"] = batch["speech"][:, : int(batch["speech_lengths"].max())]
    return batch


def _ddp_worker(rank: int, world: int, init_file: str, token_list: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    # different initial weights and Gumbel noise per rank; DDP broadcasts rank 0's weights
    model = build(
        Path(token_list),
        seed=rank,
        model_conf=dict(ctc_weight=0.3, sparsity_conf=dict(encoder_target=0.5, decoder_target=0.5)),
    ).train()
    # as ESPnet's trainer wraps it (unused_parameters: false, the OWSM setting)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    results = []
    for step in range(2):  # DDP reports unused parameters at the forward after the one that left them out
        batch = _batch(model, list(range(rank, 4, world)), seed=step)  # ESPnet shards batch[rank::world]
        loss, stats, weight = ddp(**batch)
        stats = {k: v for k, v in stats.items() if v is not None}
        local = {k: float(v) for k, v in stats.items()}
        # ESPnet's Trainer.train_one_epoch, distributed branch
        loss = (loss * weight.type(loss.dtype)).sum()
        stats, weight = recursive_average(stats, weight, distributed=True)
        loss /= weight
        loss *= dist.get_world_size()
        optim.zero_grad()
        loss.backward()
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
        results.append(dict(grads=grads, stats={k: v.clone() for k, v in stats.items()}, local=local))
        optim.step()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_over_gloo_gives_every_rank_the_same_gradients_and_reduced_stats(tmp_path, vocab):
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path / "init"), str(vocab["token_list"]), str(tmp_path)), nprocs=2, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for step in range(2):
        a, b = ranks[0][step], ranks[1][step]
        assert a["grads"].keys() == b["grads"].keys()
        for name, grad in a["grads"].items():
            # every module runs for every row in training (gates multiply): no unused parameter
            assert grad is not None and b["grads"][name] is not None, name
            assert torch.equal(grad, b["grads"][name]), name
        predictor = [g for n, g in a["grads"].items() if n.startswith("gate_predictor.")]
        assert predictor and all(torch.isfinite(g).all() for g in predictor)
        assert any(g.abs().sum() > 0 for g in predictor)  # the sparsity loss reaches the predictor
        assert a["stats"].keys() == b["stats"].keys() >= {"loss_sparsity", "sparsity_enc", "sparsity_dec"}
        for key, value in a["stats"].items():
            assert torch.equal(value, b["stats"][key]), key
            # the reduction is the batch-size weighted mean of the ranks' own stats (2 rows each)
            expected = (a["local"][key] + b["local"][key]) / 2
            assert abs(float(value) - expected) < 1e-5, key
        assert a["local"]["sparsity_dec"] != b["local"]["sparsity_dec"] or a["local"]["loss"] != b["local"]["loss"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_espnet_trainer_runs_two_cpu_processes_over_gloo(tmp_path, vocab, launcher):
    """ESPnet's own distributed modes with ngpu 0: an external launcher (torchrun sets
    RANK/WORLD_SIZE/MASTER_*), and the options s2t.sh's train_model passes for
    ``--num_nodes 2`` under Slurm (srun's environment for two one-task nodes, emulated)."""
    data = make_data(tmp_path)
    config = train_config(tmp_path / "train.yaml", max_epoch=1)
    out = tmp_path / "exp"
    cmd = train_cmd(config, data, vocab, out)
    if launcher == "torchrun":
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", *cmd[2:],
               "--multiprocessing_distributed", "false", "--dist_backend", "gloo"]  # fmt: skip
        log = run_ok(cmd, timeout=300).stderr
    else:
        cmd += ["--dist_launcher", "slurm", "--multiprocessing_distributed", "true",
                "--dist_init_method", f"file://{tmp_path}/.dist_init_1", "--dist_backend", "gloo"]  # fmt: skip
        procs = []
        for rank in range(2):
            env = {**ENV, "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank), "SLURM_LOCALID": "0",
                   "SLURM_NTASKS": "2", "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "localhost"}  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env))
        logs = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
        log = logs[0]
    assert ":0/2]" in log  # ESPnet's rank-0 log prefix: distributed with world size 2
    assert "mini-batch sizes summary: N-batch=2, mean=4.0" in log  # ESPnet then gives each rank half a batch
    assert "sparsity_dec" in log
    model = _state(out / "1epoch.pth")
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


# ---------------------------------------------------------------- decoding
@pytest.mark.slow
def test_decoding_with_two_jobs_or_batches_gives_the_same_bytes_as_one_at_a_time(tmp_path, trained):
    exp = trained["exp"]
    sets = []
    for lang, task in (("deu", "asr"), ("fra", "st_eng")):
        name = f"test_{lang}_{task}"
        wavs = [trained["root"] / "wavs" / f"utt{i:02d}.wav" for i in range(5)]
        utts = [Utterance(f"{name}_{i}", "s", lang, task, "hallo", "hallo", str(w)) for i, w in enumerate(wavs)]
        write_data_dir(tmp_path / "dump" / name, utts)
        sets.append(name)

    def decode(config, out, nj):
        return run_ok(
            [sys.executable, "-m", "espnet_gated.bin.decode", "--s2t_train_config", str(exp / "config.yaml"),
             "--s2t_model_file", str(exp / "3epoch.pth"), "--decode_config", str(config),
             "--data_root", str(tmp_path / "dump"), "--sets", " ".join(sets), "--out_dir", str(out), "--nj", str(nj)]
        )  # fmt: skip

    outputs = {}
    for nj, batch_size in ((1, 1), (2, 1), (1, 3)):
        config = tmp_path / f"decode_b{batch_size}.yaml"
        config.write_text(yaml.safe_dump(dict(beam_size=2, maxlenratio=-5, ctc_weight=0.3, batch_size=batch_size)))
        out = tmp_path / f"decode_nj{nj}_b{batch_size}"
        proc = decode(config, out, nj)
        # the console shows progress; ESPnet's per-hypothesis beam-search lines (batch_size 1) go to one log per job
        assert "utts (" in proc.stderr and "total log probability" not in proc.stderr
        assert proc.stderr.count("1 torch intra-op thread(s) per job (OMP_NUM_THREADS)") == 1
        # translation takes st_ctc_weight (default 0): its CTC learns the source transcript
        assert "test_deu_asr: " in proc.stderr and "(deu, asr, ctc_weight 0.3)" in proc.stderr
        assert "(fra, st_eng, ctc_weight 0.0)" in proc.stderr
        for job in range(1, nj + 1):
            log = (out / "logs" / f"decode.{job}.log").read_text()
            assert "utts (" in log and ("total log probability" in log) == (batch_size == 1)
        outputs[nj, batch_size] = {
            str(p.relative_to(out)): p.read_bytes() for name in sets for p in (out / name / "1best_recog").iterdir()
        }
    reference = outputs[1, 1]
    assert {Path(k).name for k in reference} >= {"text", "token", "token_int", "score", "gates"}
    for variant in ((2, 1), (1, 3)):
        assert outputs[variant].keys() == reference.keys()
        for key, content in reference.items():
            if Path(key).name != "score":  # batched scores may differ in the last float digits
                assert content == outputs[variant][key], (variant, key)
    gates = reference[f"{sets[0]}/1best_recog/gates"].decode().splitlines()
    assert [line.split()[0] for line in gates] == sorted(f"{sets[0]}_{i}" for i in range(5))
    # a re-run skips the finished shards; a changed option redoes the sets it applies to
    out, config = tmp_path / "decode_nj1_b1", tmp_path / "decode_b1.yaml"
    assert "utterances (" not in decode(config, out, 1).stderr
    config.write_text(yaml.safe_dump(dict(beam_size=2, maxlenratio=-5, ctc_weight=0.0, batch_size=1)))
    proc = decode(config, out, 1)
    assert "(deu, asr, ctc_weight 0.0)" in proc.stderr and "st_eng, ctc_weight" not in proc.stderr


# ---------------------------------------------------------------- gates vs batching
def test_inference_gates_do_not_depend_on_batching_or_repetition(vocab):
    model = build(vocab["token_list"], normalize=None).eval()  # OWSM normalises globally, not per utterance
    torch.manual_seed(5)
    with torch.no_grad():  # a predictor that opens some modules and closes others
        torch.nn.init.normal_(model.gate_predictor.mlp[-1].weight, std=2.0)
        model.gate_predictor.mlp[-1].bias.zero_()
    pooled = []
    model.gate_predictor.register_forward_pre_hook(lambda module, args: pooled.append(args[0]))
    lengths = [16000, 9000, 12345, 5000]
    speech, speech_lengths = speech_batch(lengths, seed=1)
    context = context_ids(model, PAIRS)
    with torch.no_grad():
        batched, batched_pooled = model.encode_gated(speech, speech_lengths, context=context)[2].slots, pooled[-1]
        assert 0.1 < float(batched.mean()) < 0.9  # mixed masks, so a flip would show
        again = model.encode_gated(speech, speech_lengths, context=context)[2].slots
        assert torch.equal(again, batched)  # repeated: identical
        order = [2, 0, 3, 1]
        reordered = model.encode_gated(speech[order], speech_lengths[order], context=context[order])[2].slots
        assert torch.equal(reordered, batched[order])
        for i, n in enumerate(lengths):
            alone = model.encode_gated(speech[i : i + 1, :n], speech_lengths[i : i + 1], context=context[i : i + 1])
            assert torch.equal(alone[2].slots[0], batched[i]), i
            assert torch.allclose(pooled[-1][0], batched_pooled[i], atol=1e-5), i


def test_predict_gates_pools_only_valid_frames(vocab):
    model = build(vocab["token_list"]).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        torch.nn.init.normal_(model.gate_predictor.mlp[-1].weight, std=2.0)
    d = model.encoder.output_size()
    valid = [7, 3, 5]
    xs = torch.randn(3, 7, d)
    for i, n in enumerate(valid):
        xs[i, n:] = 1e3  # whatever sits in the padding must not matter
    masks = (torch.arange(7)[None, :] < torch.tensor(valid)[:, None]).unsqueeze(1)
    context = context_ids(model, PAIRS[:3])
    batched = model.predict_gates(xs, masks, context).slots
    for i, n in enumerate(valid):
        alone = model.predict_gates(xs[i : i + 1, :n], masks[i : i + 1, :, :n], context[i : i + 1]).slots
        assert torch.equal(alone[0], batched[i]), i
