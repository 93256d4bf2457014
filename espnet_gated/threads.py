"""Torch intra-op threads per process: the cores this process may run on that other work leaves idle,
shared among the local processes (decode jobs, DDP ranks on the node).

Torch starts one thread per core. A process that shares its cores with other busy processes, or with
its own siblings, then waits at every parallel operation for a thread that is not running: on 2 busy
cores a training step of the default recipe took 2.4-3.3x longer with torch's 2 threads than with 1
(``python -m espnet_gated.bin.bench_threads``, README). Rule:

    threads = max(1, (cores in os.sched_getaffinity(0) - cores busy with other work) // local processes)

where the busy cores are measured over half a second from ``/proc/stat`` (Linux; elsewhere none are
counted); the time of niced processes counts only if we are niced too (else they yield to us).
An explicit ``--num_threads`` wins, then ``OMP_NUM_THREADS`` (which torch itself reads at start).
"""

import os
import time
from typing import Dict, Optional, Sequence, Tuple

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


def choose_threads(local_processes: int = 1, requested: Optional[int] = None) -> Tuple[int, str]:
    """(intra-op threads for each of ``local_processes`` processes, why): see the module docstring."""
    if requested:
        return requested, "--num_threads"
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        try:
            return max(1, int(os.environ["OMP_NUM_THREADS"])), "OMP_NUM_THREADS"
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']!r}: not a number of threads") from None
    cpus = affinity_cores()
    busy = round(busy_cores(cpus))
    threads = max(1, (len(cpus) - busy) // max(1, local_processes))
    return threads, (
        f"{len(cpus)} cores in this process's affinity, {busy} busy with other work, "
        f"{local_processes} local process(es); override with --num_threads or OMP_NUM_THREADS"
    )
