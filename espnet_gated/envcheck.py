"""Is this environment a tested one? ESPnet release x Python, installed versions against the lock, imports.

    python -m espnet_gated.envcheck                  # against this platform's lock, tools/lock/<platform>.txt
    python -m espnet_gated.envcheck --lock my.txt    # against another lock (pip-compile's name==version lines)
    python -m espnet_gated.envcheck --unlocked       # against setup.py's requirements only
    python -m espnet_gated.envcheck --lock-path      # print this platform's lock path (it may not exist)
    python -m espnet_gated.envcheck --plan           # which espnet and lock this Python gets; fails if unsupported

First the installed espnet and this Python must be one of the SUPPORTED combinations (each release runs on its
own Python range; setup.py's markers and tools/lock/ follow the table); otherwise one line names what is
installed and what is supported, and the check stops there (exit 1). Then exit status 0 when every locked
distribution is installed at its locked version, ``espnet2.tasks.s2t`` and ``espnet_gated.plugin.tasks`` import and the
gated classes are registered in ESPnet's S2T choices. Otherwise it prints what differs, the last lines of the
import error, the installed torch / torchaudio / espnet, and what to do, and exits 1. ``tools/setup.sh`` runs it
after every install and before it calls a venv up to date (a torchaudio that does not match torch installs fine
and only fails on import). The module imports only the standard library at the top, so ``--lock-path`` and
``--plan`` work with a bare interpreter, before any venv exists.
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
from typing import List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO_ROOT / "tools" / "lock"
#: what must import: ESPnet's S2T task (it imports torchaudio) and our task (it registers the gated classes)
IMPORTS = ("espnet2.tasks.s2t", "espnet_gated.plugin.tasks")
#: the distributions whose versions every report shows
REPORTED = ("torch", "torchaudio", "espnet")
TRACEBACK_LINES = 8
MISMATCHES_SHOWN = 20
CAUSES_SHOWN = 5


@dataclass(frozen=True)
class Supported:
    """A tested combination: one ESPnet release and the Python minor versions (inclusive) it is tested on."""

    espnet: str
    python_min: Tuple[int, int]
    python_max: Tuple[int, int]

    def covers(self, python: Sequence[int]) -> bool:
        return self.python_min <= tuple(python[:2]) <= self.python_max

    def __str__(self) -> str:
        return f"espnet {self.espnet} on Python {dotted(self.python_min)}-{dotted(self.python_max)}"


#: what CI tests (.ci/run): ESPnet 202609 and later need Python >= 3.12, so each Python range gets one release.
#: setup.py's environment markers and the locks in tools/lock/ follow this table (tests/test_install.py checks).
SUPPORTED = (
    Supported("202511", (3, 10), (3, 11)),
    Supported("202611", (3, 12), (3, 13)),
)


def dotted(version: Sequence[int]) -> str:
    return ".".join(str(part) for part in version)


def supported_text() -> str:
    return ", ".join(str(combination) for combination in SUPPORTED)


def release_for(python: Sequence[int]) -> Optional[Supported]:
    """The tested ESPnet release for this Python (None: a Python we do not support)."""
    return next((combination for combination in SUPPORTED if combination.covers(python)), None)


def combination_error(espnet: Optional[str], python: Sequence[int]) -> Optional[str]:
    """None if espnet (an installed version; None: not installed, only the Python is checked) on this Python is
    a SUPPORTED combination; otherwise one line naming what is installed, what is supported and what to do."""
    release = release_for(python)
    here = f"Python {dotted(python)}" if espnet is None else f"espnet {espnet} on Python {dotted(python)}"
    tested = {combination.espnet for combination in SUPPORTED}
    if release is None:
        why = f"no tested espnet for Python {dotted(python[:2])}"
        fix = "set up with a supported Python, e.g. PYTHON=python3.12 VENV=.venv-py312 tools/setup.sh"
    elif espnet is None or espnet.split("+")[0] == release.espnet:
        return None
    else:
        why = (
            f"Python {dotted(python[:2])} gets espnet {release.espnet}"
            if espnet.split("+")[0] in tested
            else "a release we have not tested"
        )
        fix = f"{setup_command()} installs espnet {release.espnet} from the lock"
    return f"envcheck: FAILED: {here} is not supported ({why}); supported: {supported_text()}. What to do: {fix}"


def setup_command() -> str:
    """The tools/setup.sh call that (re)installs the running venv (VENV= unless it is the default .venv)."""
    venv = shown(Path(sys.prefix))
    return "tools/setup.sh" if venv == ".venv" else f"VENV={venv} tools/setup.sh"


def what_to_do() -> str:
    venv, command = shown(Path(sys.prefix)), setup_command()
    return (
        f"what to do: {command} reinstalls the locked versions into {venv}; if they are installed and still do not "
        f"import, delete {venv} and run {command} again. ESPNET_GATED_UNLOCKED=1 {command} opts out of the "
        "lock (setup.py's exact pins only); README.md, 'Installation notes', says why each pin exists."
    )


def platform_tag() -> str:
    """The platform a lock holds for: pip-compile resolves markers (CUDA wheels on Linux x86_64) for one."""
    major, minor = sys.version_info[:2]
    return f"{sys.platform}-{platform.machine().lower()}-{sys.implementation.name}{major}.{minor}"


def lock_path() -> Path:
    """This platform's lock (tools/setup.sh --relock writes it)."""
    return LOCK_DIR / f"{platform_tag()}.txt"


def read_lock(path: Path, environment: Optional[dict] = None) -> list:
    """The ``name==version`` lines of a pip-compile lock as packaging Requirements; markers that do not apply
    here (or in ``environment``, e.g. ``{"python_version": "3.12"}`` for another Python's lock) are dropped.
    Raises ValueError naming the file and line for anything that is not one exact pin."""
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
        if req.marker is None or req.marker.evaluate(environment):
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
    if "espnet_gated.plugin.tasks" in modules:
        from espnet_gated.plugin.registry import REGISTRATIONS

        missing = [f"--{c.name} {name}" for c, name, cls in REGISTRATIONS if c.classes.get(name) is not cls]
        if missing:
            return f"espnet_gated.plugin.tasks imported but did not register {', '.join(missing)} in ESPnet's choices"
    return None


@dataclass
class Report:
    against: str  # the lock's path, or "setup.py's requirements"
    checked: int  # how many requirements were compared
    mismatches: List[Mismatch]
    import_error: Optional[str]
    versions: dict  # REPORTED name -> installed version or None
    imported: Sequence[str] = IMPORTS  # the modules the check imported

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.import_error is None

    def imports_text(self) -> str:
        if not self.imported:
            return "no imports checked"
        return " and ".join(self.imported) + (" imports" if len(self.imported) == 1 else " import")

    def __str__(self) -> str:
        versions = ", ".join(f"{name} {version or '(not installed)'}" for name, version in self.versions.items())
        versions += f" on Python {dotted(sys.version_info[:3])}"
        if self.ok:
            return (
                f"envcheck: ok: {self.checked} distributions match {self.against}; {self.imports_text()} ({versions})"
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
        lines += [f"  installed: {versions}", f"  {what_to_do()}"]
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
        imported=tuple(modules),
    )


def plan() -> str:
    """What tools/setup.sh does with this interpreter: its ESPnet release and lock, and why."""
    release = release_for(sys.version_info)
    lock = lock_path()
    missing = "" if lock.exists() else " (it does not exist yet: setup.py's exact pins only)"
    return (
        f"Python {dotted(sys.version_info[:3])} on {platform_tag()}: espnet {release.espnet} "
        f"(supported: {supported_text()}); lock {shown(lock)}{missing}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--lock", type=Path, help="lock file to compare with (default: this platform's)")
    which.add_argument("--unlocked", action="store_true", help="compare with setup.py's requirements only")
    which.add_argument("--lock-path", action="store_true", help="print this platform's lock path and exit")
    which.add_argument("--plan", action="store_true", help="print this Python's espnet and lock; 1 if unsupported")
    args = parser.parse_args(argv)
    if args.lock_path:
        print(shown(lock_path()))
        return 0
    unsupported = combination_error(None if args.plan else installed_version("espnet"), sys.version_info[:3])
    if unsupported:
        print(unsupported)
        return 1
    if args.plan:
        print(plan())
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
