"""Same commit, same machine, same seed: the same training, bit for bit. ESPnet's trainer
(espnet_gated.bin.s2t_train) trains a tiny gated model with the recipe's moving parts (Gumbel gates
sampled half open, the Lagrangian controller with per-task targets, fused AdamW, a warm-up schedule,
a data-loader worker) twice; the reporter's values of every epoch and every checkpoint must be equal.
What changes between machines is measured beside it: the thread count and the CPU kernels' ISA."""

import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_train_config
from test_resume_and_scale import ENV, make_data, train_cmd

EPOCHS = 3


def determinism_config(path: Path) -> Path:
    config = tiny_train_config(
        dict(
            controller="lagrangian",
            encoder_target=None,
            decoder_target={"asr": 0.5, "st_eng": 0.5},
            ramp_steps=4,
            lambda_lr=0.1,
            logit_l2=0.005,
        ),
        optim="adamw",
        optim_conf=dict(lr=0.002, weight_decay=1e-6, betas=[0.9, 0.98], fused=True),
        scheduler="piecewiselinearwarmuplr",
        scheduler_conf=dict(warmup_steps_list=[0, 2, 3 * EPOCHS], warmup_lr_list=[0.0, 0.002, 0.0001]),
        batch_size=4,
        max_epoch=EPOCHS,
        num_workers=1,  # the recipe's: preprocessing in a worker process
        log_interval=1,
        num_att_plot=0,
        use_matplotlib=False,
        use_tensorboard=False,
    )
    # gates start half open, so every forward pass depends on the sampled Gumbel noise
    config["model_conf"]["gate_conf"].update(init_keep_bias=0.0, tau_anneal_steps=4)
    path.write_text(yaml.safe_dump(config))
    return path


def train(setup: dict, out: Path, *options: str, **env: str) -> Path:
    """One training run (``env`` added to the environment); ESPnet's log kept as the recipe keeps it."""
    cmd = [*train_cmd(setup["config"], setup["data"], setup["vocab"], out), *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, **env})
    assert proc.returncode == 0, proc.stderr[-4000:]
    (out / "train.log").write_text(proc.stderr)
    return out


def reported(out: Path) -> dict:
    """The reporter's values of every epoch (train and valid) at full precision, timings left out."""
    stats = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"]
    return {
        (epoch, phase, key): float(value)
        for epoch, phases in stats.items()
        for phase, values in phases.items()
        for key, value in values.items()
        if not key.endswith("time")
    }


def logged_steps(out: Path) -> list:
    """The values of every per-update line of train.log (log_interval 1) as logged, timings left out."""
    steps = []
    for line in (out / "train.log").read_text().splitlines():
        if "batch: " in line:
            values = re.findall(r"([A-Za-z_]\w*)=(-?[\d.]+(?:e[+-]\d+)?)", line.split("batch: ", 1)[1])
            steps.append([(key, value) for key, value in values if not key.endswith("time")])
    return steps


def checkpoints(out: Path) -> dict:
    """Every epoch's model and the last checkpoint's optimizer, scheduler and controller state."""
    states = {f"{e}epoch": torch.load(out / f"{e}epoch.pth", map_location="cpu") for e in range(1, EPOCHS + 1)}
    last = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    states["optimizer"] = last["optimizers"][0]["state"]
    states["scheduler"] = last["schedulers"][0]
    return states


def assert_same(a, b, where: str = "") -> None:
    """Tensors equal bit for bit (torch.equal), everything else ==, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def spread(a: Path, b: Path) -> dict:
    """How far run b is from run a: the largest relative change of a reported value, the largest
    absolute change of a weight of the last epoch, and how many weight tensors differ at all."""
    ra, rb = reported(a), reported(b)
    values = max(abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12) for k in ra)
    last = f"{EPOCHS}epoch.pth"
    wa, wb = (torch.load(d / last, map_location="cpu") for d in (a, b))
    floats = [k for k in wa if wa[k].is_floating_point()]
    weights = max((wa[k] - wb[k]).abs().max().item() for k in floats)
    return {
        "reported_max_rel": values,
        "weights_max_abs": weights,
        "tensors_differing": sum(not torch.equal(wa[k], wb[k]) for k in floats),
        "tensors": len(floats),
        "loss": (ra[(EPOCHS, "train", "loss")], rb[(EPOCHS, "train", "loss")]),
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp("determinism")
    return {"data": make_data(root, n=12), "config": determinism_config(root / "train.yaml"), "vocab": vocab}


@pytest.fixture(scope="module")
def first_run(setup, tmp_path_factory):
    return train(setup, tmp_path_factory.mktemp("run") / "a", "--num_threads", "1")


@pytest.mark.slow
def test_the_same_seed_trains_the_same_model_bit_for_bit(setup, first_run, tmp_path):
    again = train(setup, tmp_path / "b", "--num_threads", "1")
    assert reported(again) == reported(first_run)  # every loss, accuracy, sparsity, multiplier, lr
    steps = logged_steps(first_run)
    assert len(steps) == 3 * EPOCHS and logged_steps(again) == steps
    sparsity = [float(value) for step in steps for key, value in step if key == "sparsity_dec"]
    assert 0.05 < max(sparsity)  # the gates were sampled closed: the runs depend on the Gumbel noise
    assert_same(checkpoints(again), checkpoints(first_run))

    other = train(setup, tmp_path / "seed1", "--num_threads", "1", "--seed", "1")
    assert reported(other) != reported(first_run)  # the comparison sees a different run


@pytest.mark.slow
def test_thread_count_and_cpu_kernels_change_rounding_only(setup, first_run, tmp_path):
    """Between machines: 2 intra-op threads against 1, and the ISA-generic CPU kernels against this
    machine's (ATEN_CPU_CAPABILITY=default, MKL and oneDNN held to SSE4.2, as on a CPU without AVX)."""
    measured = {
        "2 threads": spread(first_run, train(setup, tmp_path / "threads2", "--num_threads", "2")),
        "no AVX kernels": spread(
            first_run,
            train(
                setup, tmp_path / "sse", "--num_threads", "1",
                ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2", DNNL_MAX_CPU_ISA="SSE41",
            ),
        ),
    }  # fmt: skip
    for name, m in measured.items():
        print(f"{name}: {m}")  # the README's figures (pytest -s)
        assert m["reported_max_rel"] < 0.05 and m["weights_max_abs"] < 0.01, name
