"""Is this environment the tested one? Installed versions against the lock, and ESPnet's S2T task imports.

    python -m espnet_gated.envcheck                  # against this platform's lock, tools/lock/<platform>.txt
    python -m espnet_gated.envcheck --lock my.txt    # against another lock (pip-compile's name==version lines)
    python -m espnet_gated.envcheck --unlocked       # against setup.py's requirements only
    python -m espnet_gated.envcheck --lock-path      # print this platform's lock path (it may not exist)

Exit status 0 when every locked distribution is installed at its locked version, ``espnet2.tasks.s2t`` and
``espnet_gated.tasks`` import and the gated classes are registered in ESPnet's S2T choices. Otherwise it prints
what differs, the last lines of the import error, the installed torch / torchaudio / espnet, and what to do, and
exits 1. ``tools/setup.sh`` runs it after every install and before it calls a venv up to date (a torchaudio that
does not match torch installs fine and only fails on import). The module imports only the standard library at
the top, so ``--lock-path`` works in a bare venv.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO_ROOT / "tools" / "lock"
#: what must import: ESPnet's S2T task (it imports torchaudio) and our task (it registers the gated classes)
IMPORTS = ("espnet2.tasks.s2t", "espnet_gated.tasks")
#: the distributions whose versions every report shows
REPORTED = ("torch", "torchaudio", "espnet")
TRACEBACK_LINES = 8
MISMATCHES_SHOWN = 20
CAUSES_SHOWN = 5
WHAT_TO_DO = (
    "what to do: tools/setup.sh reinstalls the locked versions into .venv; if they are installed and still do not "
    "import, delete .venv and run tools/setup.sh again. ESPNET_GATED_UNLOCKED=1 tools/setup.sh opts out of the "
    "lock (setup.py's exact pins only); README.md, 'Installation notes', says why each pin exists."
)


def platform_tag() -> str:
    """The platform a lock holds for: pip-compile resolves markers (CUDA wheels on Linux x86_64) for one."""
    major, minor = sys.version_info[:2]
    return f"{sys.platform}-{platform.machine().lower()}-{sys.implementation.name}{major}.{minor}"


def lock_path() -> Path:
    """This platform's lock (tools/setup.sh --relock writes it)."""
    return LOCK_DIR / f"{platform_tag()}.txt"


def read_lock(path: Path) -> list:
    """The ``name==version`` lines of a pip-compile lock as packaging Requirements; markers that do not apply
    here are dropped. Raises ValueError naming the file and line for anything that is not one exact pin."""
    from packaging.requirements import InvalidRequirement, Requirement

    pins = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            raise ValueError(f"{path}:{number}: not a requirement ({err}): {text!r}") from None
        if len(req.specifier) != 1 or next(iter(req.specifier)).operator != "==" or req.url:
            raise ValueError(f"{path}:{number}: a lock pins one exact version (name==version), not {text!r}")
        if req.marker is None or req.marker.evaluate():
            pins.append(req)
    if not pins:
        raise ValueError(f"{path}: no name==version line: not a lock")
    return pins


def declared_requirements(dist: str = "espnet-gated", extra: str = "test") -> list:
    """setup.py's requirements as installed (tools/setup.sh installs the ``test`` extra)."""
    from packaging.requirements import Requirement

    reqs = [Requirement(text) for text in importlib.metadata.requires(dist) or ()]
    return [req for req in reqs if req.marker is None or req.marker.evaluate({"extra": extra})]


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Mismatch:
    name: str
    wanted: str  # a specifier, e.g. "==2.11.0"
    installed: Optional[str]  # None: not installed
    source: str  # who wants it: "the lock pins", "setup.py requires"

    def __str__(self) -> str:
        have = f"installed {self.installed}" if self.installed else "not installed"
        return f"{self.name}: {have}, {self.source} {self.wanted}"


def mismatches(requirements: Sequence, source: str) -> List[Mismatch]:
    """The requirements that the installed distributions do not satisfy (a local label such as +cu130 matches)."""
    out = []
    for req in requirements:
        version = installed_version(req.name)
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(Mismatch(req.name, str(req.specifier), version, source))
    return out


def causes(err: BaseException) -> List[str]:
    """The messages of the exceptions that led to ``err`` (torch hides the undefined symbol in one)."""
    out = []
    while True:
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if err is None or len(out) >= CAUSES_SHOWN:
            return out
        out.append("caused by: " + traceback.format_exception_only(type(err), err)[-1].rstrip())


def import_error(modules: Sequence[str] = IMPORTS) -> Optional[str]:
    """None if every module imports (and the gated classes are registered), else the error's last lines."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # a torchaudio built for another torch raises OSError (undefined symbol)
            lines = traceback.format_exc().rstrip().splitlines()[-TRACEBACK_LINES:]
            return f"import {module} failed:\n" + "\n".join(lines + causes(err))
    if "espnet_gated.tasks" in modules:
        from espnet_gated.registry import REGISTRATIONS

        missing = [f"--{c.name} {name}" for c, name, cls in REGISTRATIONS if c.classes.get(name) is not cls]
        if missing:
            return f"espnet_gated.tasks imported but did not register {', '.join(missing)} in ESPnet's S2T choices"
    return None


@dataclass
class Report:
    against: str  # the lock's path, or "setup.py's requirements"
    checked: int  # how many requirements were compared
    mismatches: List[Mismatch]
    import_error: Optional[str]
    versions: dict  # REPORTED name -> installed version or None

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.import_error is None

    def __str__(self) -> str:
        versions = ", ".join(f"{name} {version or '(not installed)'}" for name, version in self.versions.items())
        if self.ok:
            return (
                f"envcheck: ok: {self.checked} distributions match {self.against}; "
                f"{' and '.join(IMPORTS)} import ({versions})"
            )
        lines = [f"envcheck: FAILED against {self.against} ({self.checked} distributions)"]
        if self.mismatches:
            lines.append(f"  {len(self.mismatches)} installed distribution(s) differ:")
            lines += [f"    {m}" for m in self.mismatches[:MISMATCHES_SHOWN]]
            if len(self.mismatches) > MISMATCHES_SHOWN:
                lines.append(f"    ... and {len(self.mismatches) - MISMATCHES_SHOWN} more")
        if self.import_error:
            first, *rest = self.import_error.splitlines()
            lines += [f"  {first}"] + [f"    {line}" for line in rest]
        lines += [f"  installed: {versions}", f"  {WHAT_TO_DO}"]
        return "\n".join(lines)


def shown(path: Path) -> str:
    """A path as the user would type it from the repository root."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def check(lock: Optional[Path], modules: Sequence[str] = IMPORTS) -> Report:
    """Compare the installed distributions with ``lock`` (None: setup.py's requirements), then import ``modules``."""
    requirements = read_lock(lock) if lock is not None else declared_requirements()
    return Report(
        against=shown(lock) if lock is not None else "setup.py's requirements",
        checked=len(requirements),
        mismatches=mismatches(requirements, "the lock pins" if lock is not None else "setup.py requires"),
        import_error=import_error(modules),
        versions={name: installed_version(name) for name in REPORTED},
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--lock", type=Path, help="lock file to compare with (default: this platform's)")
    which.add_argument("--unlocked", action="store_true", help="compare with setup.py's requirements only")
    which.add_argument("--lock-path", action="store_true", help="print this platform's lock path and exit")
    args = parser.parse_args(argv)
    if args.lock_path:
        print(shown(lock_path()))
        return 0
    lock = args.lock
    if lock is None and not args.unlocked:
        lock = lock_path()
        if not lock.exists():
            print(f"envcheck: no lock for {platform_tag()} ({shown(lock)}); checking setup.py's requirements only")
            lock = None
    if lock is not None and not lock.is_file():
        print(f"envcheck: the lock {lock} does not exist")
        return 1
    try:
        report = check(lock)
    except ModuleNotFoundError as err:  # packaging (a dependency of espnet) is missing: nothing is installed yet
        print(f"envcheck: FAILED: {err}; the environment has not been installed (run tools/setup.sh)")
        return 1
    except (ValueError, importlib.metadata.PackageNotFoundError) as err:
        print(f"envcheck: FAILED: {err}")
        return 1
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
