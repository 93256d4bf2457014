"""Torch intra-op threads per process: the cores this process may run on, shared among the local
processes (decode jobs, DDP ranks on the node).

Torch starts one thread per core, and its own processes on one node would then compete for them. Rule:

    threads = max(1, cores in os.sched_getaffinity(0) // local processes)

It depends on the machine (and the cores a scheduler gives the job), never on its momentary load: the
number of threads changes a training's numbers (their summation order), so a run with the same commit,
seed and machine gives the same numbers (README, "Determinism"). On a machine that other work keeps busy
the rule's threads wait for cores at every parallel operation (2.4-3.3x slower steps with 2 threads on
2 busy cores, ``python -m espnet_gated.bin.bench_threads``): ``auto`` (``--num_threads auto``) then
subtracts the cores busy with other work, measured over half a second from ``/proc/stat`` (Linux;
niced work counts only if we are niced too), faster but not reproducible. An explicit number wins,
then ``OMP_NUM_THREADS`` (which torch itself reads at start).
"""

import argparse
import os
import time
from typing import Dict, Sequence, Tuple, Union

#: /proc/stat per-CPU fields: user nice system idle iowait irq softirq steal
IDLE_FIELDS = (3, 4)
NICE_FIELD = 1
WINDOW_S = 0.5


def affinity_cores() -> Sequence[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def _cpu_times() -> Dict[int, Sequence[int]]:
    times = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                times[int(name[3:])] = [int(x) for x in fields[:8]]
    return times


def busy_cores(cpus: Sequence[int], window_s: float = WINDOW_S) -> float:
    """How many of ``cpus`` other processes keep busy, averaged over ``window_s`` (this process
    sleeps meanwhile). Work of processes niced below us counts only if we are niced too."""
    try:
        before = _cpu_times()
        time.sleep(window_s)
        after = _cpu_times()
    except OSError:  # no /proc/stat
        return 0.0
    free = set(IDLE_FIELDS) | ({NICE_FIELD} if os.nice(0) == 0 else set())
    busy = 0.0
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            continue
        delta = [a - b for a, b in zip(after[cpu], before[cpu], strict=True)]
        total = sum(delta)
        if total > 0:
            busy += 1 - sum(delta[i] for i in free) / total
    return busy


#: ``--num_threads`` value that subtracts the cores other work keeps busy (faster on a shared machine, not reproducible)
AUTO = "auto"


def thread_option(value: str):
    """argparse type of ``--num_threads``: a positive number of threads, or ``auto``."""
    if value == AUTO:
        return AUTO
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise argparse.ArgumentTypeError(f"--num_threads {value!r}: want a number of threads >= 1 or '{AUTO}'")
    return threads


def choose_threads(local_processes: int = 1, requested: Union[int, str, None] = None) -> Tuple[int, str]:
    """(intra-op threads for each of ``local_processes`` processes, why): see the module docstring."""
    if isinstance(requested, int):
        return requested, "--num_threads"
    if requested != AUTO and os.environ.get("OMP_NUM_THREADS", "").strip():
        try:
            return max(1, int(os.environ["OMP_NUM_THREADS"])), "OMP_NUM_THREADS"
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']!r}: not a number of threads") from None
    cpus = affinity_cores()
    busy = round(busy_cores(cpus)) if requested == AUTO else 0
    threads = max(1, (len(cpus) - busy) // max(1, local_processes))
    measured = f", {busy} busy with other work (--num_threads {AUTO})" if requested == AUTO else ""
    return threads, (
        f"{len(cpus)} cores in this process's affinity{measured}, {local_processes} local process(es); "
        f"override with --num_threads N|{AUTO} or OMP_NUM_THREADS"
    )
