r"""Run N copies of a command as parallel jobs, locally or on Slurm (what ESPnet's run.pl / slurm.pl do).

The stage engine's ``--decode_cmd`` and ``--train_cmd`` are launcher command lines: a backend
(``local`` or ``slurm``), then options. ``JOB`` in the log path and in the command is replaced by
the job's number (1..N), as in ESPnet's ``${decode_cmd} JOB=1:N log.JOB cmd``.

* ``local``: the jobs run here in parallel; each job's output goes to its log and to the
  console. With ``--gpu G`` each job gets its own G devices through ``CUDA_VISIBLE_DEVICES``
  (taken in turn from the visible ones: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU
  ``nvidia-smi -L`` lists; more jobs than devices share them, with a warning). Each job gets
  ``OMP_NUM_THREADS`` = CPUs / N unless it is set.
* ``slurm``: one ``sbatch --wait`` array job (``--array=1-N``; with ``--gpu G``, ``--gres=gpu:G``
  per array task, so Slurm gives each job its own devices; ``--nodes M`` for a multi-node
  trainer that ``srun``\ s inside); options the launcher does not know are passed to sbatch
  (``slurm --partition gpu --time 4:00:00``). The logs are shown on the console while it waits.
* ``--dry_run``: print each job's command line (with its devices), or the sbatch command and
  script, and run nothing.

Usage:
    python -m espnet_gated.bin.launch local --gpu 1 JOB=1:4 exp/logs/decode.JOB.log \
        python -m espnet_gated.bin.decode ... --job JOB
    python -m espnet_gated.bin.launch slurm --partition gpu --gpu 1 JOB=1:4 exp/logs/decode.JOB.log -- \
        python -m espnet_gated.bin.decode ... --job JOB
"""

import argparse
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, TextIO

from espnet_gated.cli import UsageError
from espnet_gated.recipe.threads import choose_threads

BACKENDS = ("local", "slurm")
JOB = re.compile(r"\bJOB\b")
JOB_RANGE = re.compile(r"^JOB=(\d+):(\d+)$")


class LaunchError(OSError):
    """Jobs could not be started or some failed; the message names their logs."""


@dataclass
class Job:
    number: int  # 1-based, as JOB
    command: List[str]
    log: Path
    env: Dict[str, str]  # set for this job on top of the launcher's environment

    def line(self) -> str:
        """The shell command line this job runs (what ``--dry_run`` prints and each log starts with)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env + ' ' if env else ''}{shlex.join(self.command)}"


def with_job(text: str, number: int) -> str:
    return JOB.sub(str(number), text)


# ---------------------------------------------------------------- devices
def visible_gpus() -> List[str]:
    """The devices jobs may use: ``CUDA_VISIBLE_DEVICES`` if set, else what ``nvidia-smi -L`` lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def job_devices(n_jobs: int, gpus_per_job: int, visible: Sequence[str]) -> List[str]:
    """``CUDA_VISIBLE_DEVICES`` of each job: consecutive groups of ``gpus_per_job`` visible devices,
    round-robin when there are fewer than the jobs need."""
    if gpus_per_job <= 0:
        return [""] * n_jobs
    if len(visible) < gpus_per_job:
        raise LaunchError(
            f"--gpu {gpus_per_job} but {len(visible)} GPU(s) are visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}; nvidia-smi -L lists the GPUs)"
        )
    groups = len(visible) // gpus_per_job
    if n_jobs > groups:
        logging.warning(f"{n_jobs} jobs of {gpus_per_job} GPU(s) on {len(visible)} GPU(s): jobs share devices")
    return [",".join(visible[(j % groups) * gpus_per_job : (j % groups + 1) * gpus_per_job]) for j in range(n_jobs)]


def local_jobs(command: Sequence[str], first: int, last: int, log: str, gpus_per_job: int = 0) -> List[Job]:
    n_jobs = last - first + 1
    devices = job_devices(n_jobs, gpus_per_job, visible_gpus() if gpus_per_job else [])
    threads = str(choose_threads(n_jobs)[0])  # the same rule as training (espnet_gated.recipe.threads)
    jobs = []
    for i, number in enumerate(range(first, last + 1)):
        env = {"CUDA_VISIBLE_DEVICES": devices[i]} if gpus_per_job else {}
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = threads
        jobs.append(Job(number, [with_job(a, number) for a in command], Path(with_job(log, number)), env))
    return jobs


# ---------------------------------------------------------------- running
def _follow(stream, log: TextIO, console: TextIO) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        console.write(line)
        console.flush()


def run_local(jobs: Sequence[Job], console: TextIO = sys.stderr) -> None:
    """Run the jobs in parallel; each one's output to its log and to ``console``. Raises
    :class:`LaunchError` naming the logs of the failed jobs (after all have ended)."""
    procs, threads, logs = [], [], []
    try:
        for job in jobs:
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "w", encoding="utf-8")
            logs.append(log)
            log.write(f"# {job.line()}\n# started at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            log.flush()
            proc = subprocess.Popen(
                job.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **job.env}
            )
            procs.append(proc)
            thread = threading.Thread(target=_follow, args=(proc.stdout, log, console), daemon=True)
            thread.start()
            threads.append(thread)
        codes = [proc.wait() for proc in procs]
        for thread in threads:
            thread.join()
    finally:
        for proc in procs:  # interrupted (Ctrl-C, a killed stage): no job outlives the launcher
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        for log in logs:
            log.close()
    for job, code in zip(jobs, codes, strict=True):
        with open(job.log, "a", encoding="utf-8") as f:
            f.write(f"# ended (exit code {code}) at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    failed = [(job, code) for job, code in zip(jobs, codes, strict=True) if code != 0]
    if failed:
        listing = ", ".join(f"job {job.number} (exit code {code}): {job.log}" for job, code in failed)
        raise LaunchError(f"{len(failed)} of {len(jobs)} job(s) failed: {listing}")


def _script_word(arg: str) -> str:
    """A shell word for ``arg`` in which ``JOB`` becomes the array task's number."""
    parts = JOB.split(arg)
    return '"${SLURM_ARRAY_TASK_ID}"'.join(shlex.quote(p) if p else "" for p in parts) or "''"


def job_name(command: Sequence[str]) -> str:
    """The Python module a command runs (``decode`` of ``python -m espnet_gated.bin.decode``), else its program."""
    if "-m" in command[:-1]:
        return command[list(command).index("-m") + 1].rsplit(".", 1)[-1]
    return Path(command[0]).name


def slurm_submission(
    command: Sequence[str], first: int, last: int, log: str, gpus_per_job: int, nodes: int, sbatch_opts: Sequence[str]
):
    """(sbatch command line, batch script) of one array job running ``command`` once per JOB."""
    log_dir = Path(with_job(log, first)).parent
    script = log_dir / (JOB.sub("", Path(log).name).replace("..", ".").removesuffix(".log") + ".slurm.sh")
    lines = [
        "#!/usr/bin/env bash",
        "# written by espnet_gated.recipe.launcher: one array task per JOB",
        "set -e",
        f"cd {shlex.quote(os.getcwd())}",
        " ".join(_script_word(a) for a in command),
    ]
    sbatch = ["sbatch", "--parsable", "--wait", f"--job-name={job_name(command)}", f"--array={first}-{last}",
              f"--output={JOB.sub('%a', log)}"]  # fmt: skip
    if gpus_per_job > 0:
        sbatch.append(f"--gres=gpu:{gpus_per_job}")
    if nodes > 1:
        sbatch += [f"--nodes={nodes}", "--ntasks-per-node=1"]
    return sbatch + list(sbatch_opts) + [str(script)], "\n".join(lines) + "\n", script


def run_slurm(sbatch: List[str], script_text: str, script: Path, logs: Sequence[Path], console: TextIO = sys.stderr):
    """Submit and wait (``sbatch --wait``), showing the logs as they grow."""
    if shutil.which("sbatch") is None:
        raise LaunchError("the slurm backend needs sbatch on PATH (run on a Slurm login node, or use local)")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(script_text, encoding="utf-8")
    script.chmod(0o755)
    for log in logs:
        log.unlink(missing_ok=True)
    logging.info(f"submitting {len(logs)} job(s): {shlex.join(sbatch)}")
    proc = subprocess.Popen(sbatch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = {log: 0 for log in logs}

    def show_new():
        for log in logs:
            if log.is_file():
                with open(log, "rb") as f:
                    f.seek(shown[log])
                    data = f.read()
                shown[log] += len(data)
                console.write(data.decode("utf-8", errors="replace"))
        console.flush()

    try:
        while proc.poll() is None:
            show_new()
            time.sleep(2.0)
    except BaseException:
        proc.terminate()  # sbatch --wait cancels nothing by itself: say what to cancel
        job_id = (proc.communicate()[0] or "").strip()
        logging.error(f"stopped waiting for Slurm job {job_id or '?'}: scancel it if it still runs")
        raise
    show_new()
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise LaunchError(
            f"Slurm job {out.strip() or '?'} failed (sbatch exit code {proc.returncode}; {err.strip()[-500:]}); "
            f"logs: {', '.join(str(log) for log in logs)}"
        )


# ---------------------------------------------------------------- command line
def parse(argv: Sequence[str]):
    """(launcher options, sbatch options, first, last, log, command) of a launcher command line."""
    argv = list(argv)
    spec = next((i for i, a in enumerate(argv) if JOB_RANGE.match(a)), None)
    if spec is None or spec + 2 > len(argv):
        raise UsageError("usage: launch BACKEND [options] JOB=1:N LOG COMMAND... (see --help)")
    parser = argparse.ArgumentParser(prog="python -m espnet_gated.bin.launch", add_help=False, allow_abbrev=False)
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--gpu", type=int, default=0, help="GPUs per job")
    parser.add_argument("--nodes", type=int, default=1, help="nodes per job (slurm)")
    parser.add_argument("--dry_run", action="store_true", help="print the jobs, run nothing")
    opts, extra = parser.parse_known_args(argv[:spec])
    if extra and opts.backend != "slurm":
        raise UsageError(f"unknown launcher option(s) {' '.join(extra)} (only the slurm backend passes options on)")
    if opts.nodes > 1 and opts.backend != "slurm":
        raise UsageError("--nodes > 1 needs the slurm backend")
    first, last = map(int, JOB_RANGE.match(argv[spec]).groups())
    if not 1 <= first <= last:
        raise UsageError(f"{argv[spec]}: want JOB=first:last with 1 <= first <= last")
    log, command = argv[spec + 1], argv[spec + 2 :]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command to run")
    return opts, extra, first, last, log, command


def launch(argv: Sequence[str], console: TextIO = sys.stderr) -> None:
    opts, extra, first, last, log, command = parse(argv)
    if opts.backend == "local":
        jobs = local_jobs(command, first, last, log, opts.gpu)
        if opts.dry_run:
            for job in jobs:
                print(f"job {job.number}: {job.line()} > {job.log}")
            return
        run_local(jobs, console)
        return
    sbatch, script_text, script = slurm_submission(command, first, last, log, opts.gpu, opts.nodes, extra)
    if opts.dry_run:
        print(shlex.join(sbatch))
        print(f"# {script}:\n{script_text}", end="")
        return
    run_slurm(sbatch, script_text, script, [Path(with_job(log, n)) for n in range(first, last + 1)], console)
