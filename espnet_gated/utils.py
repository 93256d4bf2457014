"""Small helpers shared by the recipe tools: atomic writes and Kaldi-style text files."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Union

PathLike = Union[str, Path]


@contextmanager
def atomic_output(path: PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success,
    so readers never see a half-written file and a failure leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
