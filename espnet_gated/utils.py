"""Small helpers shared by the recipe tools: atomic writes, Kaldi-style text files, progress."""

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

PathLike = Union[str, Path]


def umask() -> int:
    """The process's file-creation mask (temporary files get the permissions a plain
    ``open`` would give, not mkstemp's 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success,
    so readers never see a half-written file and a failure leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~umask())
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: PathLike, text: str) -> None:
    with atomic_output(path) as f:
        f.write(text)


def replace_dir(new: PathLike, target: PathLike) -> None:
    """Put the finished directory ``new`` in the place of ``target`` (which may not exist): the old one is
    moved aside before and removed after, so a crash never leaves a half-written ``target``."""
    new, target = Path(new), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)


def read_kaldi_map(path: PathLike) -> Dict[str, str]:
    """``<key> <value>`` lines -> dict; a line without a value maps to ''.

    Raises ValueError naming the file and line for duplicate keys.
    """
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            if key in out:
                raise ValueError(f"{path}:{lineno}: duplicate key '{key}'")
            out[key] = value
    return out


class Progress:
    """Log lines with count, rate and ETA, at most every ``every_s`` seconds."""

    def __init__(self, total: Optional[int], what: str = "utts", every_s: float = 10.0):
        self.total, self.what, self.every_s = total, what, every_s
        self.start = self.last = time.time()
        self.done = 0

    def update(self, n: int = 1, force: bool = False) -> None:
        self.done += n
        now = time.time()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        if self.total:
            eta = (self.total - self.done) / max(rate, 1e-9)
            logging.info(f"{self.done}/{self.total} {self.what} ({rate:.2f} {self.what}/s, ETA {eta:.0f} s)")
        else:
            logging.info(f"{self.done} {self.what} ({rate:.2f} {self.what}/s)")
