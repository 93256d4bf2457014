"""The torch thread rule of training and decoding (espnet_gated.recipe.threads)."""

import argparse

import pytest

from espnet_gated.bin.s2t_train import local_processes
from espnet_gated.recipe import threads


@pytest.fixture
def machine(monkeypatch):
    """8 cores in the affinity, of which ``busy`` are kept busy by other work."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "affinity_cores", lambda: list(range(8)))
    state = {"busy": 0.0}
    monkeypatch.setattr(threads, "busy_cores", lambda cpus: state["busy"])
    return state


def test_the_cores_are_shared_among_the_local_processes_whatever_the_load(machine):
    assert threads.choose_threads(1)[0] == 8
    assert threads.choose_threads(3)[0] == 2  # decode jobs or DDP ranks: 8 // 3
    machine["busy"] = 7.6  # the load does not change the default (the numbers would)
    assert threads.choose_threads(3)[0] == 2
    assert threads.choose_threads(16)[0] == 1  # never 0


def test_auto_leaves_out_the_cores_other_work_keeps_busy(machine):
    machine["busy"] = 2.4  # two cores busy elsewhere
    threads_, why = threads.choose_threads(3, threads.AUTO)
    assert threads_ == 2 and "8 cores in this process's affinity, 2 busy with other work (--num_threads auto)" in why
    machine["busy"] = 7.6
    assert threads.choose_threads(1, threads.AUTO)[0] == 1


def test_the_num_threads_option():
    assert threads.thread_option("3") == 3 and threads.thread_option("auto") == threads.AUTO
    for bad in ("0", "-1", "two"):
        want = f"--num_threads '{bad}': want a number of threads >= 1 or 'auto'"
        with pytest.raises(argparse.ArgumentTypeError, match=want):
            threads.thread_option(bad)


def test_an_explicit_count_wins_then_omp_num_threads(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(2) == (3, "OMP_NUM_THREADS")
    assert threads.choose_threads(2, threads.AUTO)[0] == 8 // 2  # auto measures; the machine is idle here
    assert threads.choose_threads(2, requested=5) == (5, "--num_threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many': not a number of threads"):
        threads.choose_threads(1)


def test_busy_cores_from_two_proc_stat_snapshots(monkeypatch):
    """Per CPU: 1 - (idle + iowait [+ nice, unless we are niced]) / total ticks between the snapshots; CPUs outside
    the affinity, or missing from a snapshot, do not count."""
    #            user nice system idle iowait irq softirq steal
    before = {0: [100, 0, 0, 100, 0, 0, 0, 0], 1: [0, 0, 0, 0, 0, 0, 0, 0], 2: [0] * 8}
    after = {
        0: [160, 0, 20, 110, 10, 0, 0, 0],  # 80 busy of 100 ticks
        1: [0, 50, 0, 40, 0, 0, 0, 10],  # 10 busy (steal) and 50 niced of 100
        3: [500, 0, 0, 0, 0, 0, 0, 0],  # not in the first snapshot
    }
    snapshots = iter([before, after])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(snapshots))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads.os, "nice", lambda increment: 0)
    assert threads.busy_cores([0, 1, 2, 3], window_s=0.0) == pytest.approx(0.8 + 0.1)
    snapshots = iter([before, after])
    monkeypatch.setattr(threads.os, "nice", lambda increment: 5)  # niced ourselves: niced work competes
    assert threads.busy_cores([1], window_s=0.0) == pytest.approx(0.6)


def test_training_counts_the_processes_espnet_spawns_on_the_node():
    def args(ngpu, spawn):
        return argparse.Namespace(ngpu=ngpu, multiprocessing_distributed=spawn)

    assert local_processes(args(4, True)) == 4  # one DDP process per GPU
    assert local_processes(args(4, False)) == 1  # DataParallel, or one process of an external launcher
    assert local_processes(args(0, True)) == 1
