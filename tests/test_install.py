"""The installed environment is a supported and locked one, and one that is not gets a message that says why.

The first test runs the check exactly as tools/setup.sh does (a fresh process, so the imports are real);
the others write their own locks, failing modules and distribution metadata next to the real installation, or
pass the versions of an espnet x Python combination to the check.
"""

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from espnet_gated import envcheck

LOCK = envcheck.lock_path()
needs_lock = pytest.mark.skipif(not LOCK.exists(), reason=f"no lock for {envcheck.platform_tag()} ({LOCK})")
unlocked = pytest.mark.skipif(
    os.environ.get("ESPNET_GATED_UNLOCKED") == "1", reason="ESPNET_GATED_UNLOCKED=1: this venv is not the lock"
)


def pins(path, environment=None):
    return {req.name: str(req.specifier) for req in envcheck.read_lock(path, environment)}


@needs_lock
@unlocked
def test_installed_torch_torchaudio_espnet_are_the_locked_versions_and_s2t_imports():
    locked = pins(LOCK)
    for name in ("torch", "torchaudio", "espnet"):
        installed = envcheck.installed_version(name)
        assert locked[name] == f"=={installed.split('+')[0]}", f"{name}: installed {installed}, lock {locked[name]}"
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_gated.envcheck", "--lock", str(LOCK)],
        capture_output=True,
        text=True,
        cwd=envcheck.REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"envcheck: ok: {len(locked)} distributions match" in proc.stdout
    assert "espnet2.tasks.s2t and espnet_gated.plugin.tasks import" in proc.stdout


@needs_lock
def test_a_lock_with_another_torchaudio_names_both_versions(tmp_path, capsys):
    installed = envcheck.installed_version("torchaudio")
    other = "2.11.1" if installed != "2.11.1" else "2.11.0"
    lock = tmp_path / "lock.txt"
    text = LOCK.read_text()
    assert f"\ntorchaudio=={installed}\n" in text
    lock.write_text(text.replace(f"\ntorchaudio=={installed}\n", f"\ntorchaudio=={other}\n"))

    assert envcheck.main(["--lock", str(lock)]) == 1
    out = capsys.readouterr().out
    assert f"envcheck: FAILED against {lock}" in out
    assert f"torchaudio: installed {installed}, the lock pins =={other}" in out
    assert "1 installed distribution(s) differ" in out
    assert f"torchaudio {installed}" in out.splitlines()[-2]  # the installed versions line
    assert "tools/setup.sh" in out.splitlines()[-1]  # what to do


def test_an_import_that_fails_shows_the_error_the_versions_and_what_to_do(tmp_path, monkeypatch):
    # a module whose import fails the way a torchaudio built for another torch does
    (tmp_path / "broken_extension.py").write_text(
        "def load_library(path):\n"
        "    try:\n"
        "        raise OSError(f'{path}: undefined symbol: torch_exception_get_what_without_backtrace')\n"
        "    except OSError as e:\n"
        "        raise OSError(f'Could not load this library: {path}') from e\n"
        "load_library('libtorchaudio.so')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    lock = tmp_path / "lock.txt"
    lock.write_text(f"torch=={envcheck.installed_version('torch')}\n    # via espnet-gated\n")

    report = envcheck.check(lock, modules=("broken_extension",))
    assert not report.ok and report.mismatches == []
    text = str(report)
    assert "import broken_extension failed:" in text
    assert "OSError: Could not load this library: libtorchaudio.so" in text
    assert "caused by: OSError: libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace" in text
    assert "in load_library" in text  # the traceback's last lines, not only the message
    for name in ("torch", "torchaudio", "espnet"):
        assert f"{name} {envcheck.installed_version(name)}" in text
    assert text.splitlines()[-1].startswith(f"  what to do: {envcheck.setup_command()} reinstalls")


@pytest.mark.parametrize(
    "line, problem",
    [("torch>=2.11", "one exact version"), ("torch==2.11.0 extra words", "not a requirement")],
)
def test_a_bad_lock_line_names_the_file_and_line(tmp_path, line, problem):
    lock = tmp_path / "lock.txt"
    lock.write_text(f"# header\nnumpy==2.0.0\n{line}\n")
    with pytest.raises(ValueError, match=rf"lock.txt:3: .*{problem}"):
        envcheck.read_lock(lock)


def test_the_check_against_setup_py_passes_here_and_a_missing_distribution_is_named(tmp_path):
    assert envcheck.check(None).mismatches == []  # torch==2.11.0 etc. as espnet-gated's metadata declares them
    lock = tmp_path / "lock.txt"
    lock.write_text("torch-that-does-not-exist==1.0\n")
    assert [str(m) for m in envcheck.check(lock, modules=()).mismatches] == [
        "torch-that-does-not-exist: not installed, the lock pins ==1.0"
    ]


SUPPORTED_TEXT = "supported: espnet 202511 on Python 3.10-3.11, espnet 202611 on Python 3.12-3.13"


@pytest.mark.parametrize(
    "espnet, python, why",
    [
        ("202611", (3, 11, 7), "Python 3.11 gets espnet 202511"),
        ("202511", (3, 12, 1), "Python 3.12 gets espnet 202611"),
        ("202610", (3, 12, 1), "a release we have not tested"),
        ("202609", (3, 13, 0), "a release we have not tested"),
        ("202611.post1", (3, 13, 0), "a release we have not tested"),
        ("202611", (3, 14, 0), "no tested espnet for Python 3.14"),
        ("202511", (3, 9, 18), "no tested espnet for Python 3.9"),
    ],
)
def test_a_bad_combination_gets_one_line_naming_what_is_installed_and_what_is_supported(espnet, python, why):
    error = envcheck.combination_error(espnet, python)
    assert error is not None and "\n" not in error
    installed = f"espnet {espnet} on Python {'.'.join(map(str, python))}"
    assert error.startswith(f"envcheck: FAILED: {installed} is not supported ({why}); {SUPPORTED_TEXT}. What to do: ")


@pytest.mark.parametrize(
    "espnet, python",
    [("202511", (3, 10, 13)), ("202511", (3, 11, 7)), ("202611", (3, 12, 1)), ("202611", (3, 13, 0)), (None, (3, 12))],
)
def test_the_supported_combinations_pass(espnet, python):
    assert envcheck.combination_error(espnet, python) is None


def test_the_check_stops_at_an_untested_espnet_with_one_line(tmp_path):
    # espnet 202610's metadata ahead of the real installation on sys.path: importlib.metadata finds it first
    dist_info = tmp_path / "espnet-202610.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: espnet\nVersion: 202610\n")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_gated.envcheck"],
        capture_output=True,
        text=True,
        cwd=envcheck.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(envcheck.REPO_ROOT)])},
    )
    assert proc.returncode == 1
    python = ".".join(map(str, sys.version_info[:3]))
    release = envcheck.release_for(sys.version_info).espnet
    assert proc.stdout.splitlines() == [
        f"envcheck: FAILED: espnet 202610 on Python {python} is not supported (a release we have not tested); "
        f"{SUPPORTED_TEXT}. What to do: {envcheck.setup_command()} installs espnet {release} from the lock"
    ]


def test_plan_names_the_espnet_and_the_lock_of_this_python(capsys):
    assert envcheck.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert f"espnet {envcheck.release_for(sys.version_info).espnet} (supported:" in out
    assert f"lock tools/lock/{envcheck.platform_tag()}.txt" in out


def marker_environment(python):
    return {"python_version": f"{python[0]}.{python[1]}", "python_full_version": f"{python[0]}.{python[1]}.0"}


def requirements_for(python):
    """espnet-gated's installed requirements (setup.py's, with the test extra) as they apply on Python X.Y."""
    reqs = [Requirement(text) for text in metadata.requires("espnet-gated")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({**marker_environment(python), "extra": "test"})]


def test_setup_py_gives_each_python_the_espnet_of_the_table():
    requires_python = SpecifierSet(metadata.metadata("espnet-gated")["Requires-Python"])
    for combination in envcheck.SUPPORTED:
        for python in (combination.python_min, combination.python_max):
            assert f"{python[0]}.{python[1]}.0" in requires_python
            espnet = [str(r.specifier) for r in requirements_for(python) if r.name == "espnet"]
            assert espnet == [f"=={combination.espnet}"], f"Python {python}"
    assert "3.9.18" not in requires_python and "3.14.0" not in requires_python


LOCKS = sorted(envcheck.LOCK_DIR.glob("*.txt"))


@pytest.mark.parametrize("lock", LOCKS, ids=[lock.name for lock in LOCKS])
def test_each_lock_pins_its_pythons_espnet_and_setup_pys_exact_pins(lock):
    python = tuple(int(part) for part in re.fullmatch(r".*-cpython(\d+)\.(\d+)\.txt", lock.name).groups())
    release = envcheck.release_for(python)
    assert release is not None, f"{lock.name}: a lock for a Python we do not support"
    locked = pins(lock, marker_environment(python))
    assert locked["espnet"] == f"=={release.espnet}"
    exact = {r.name: str(r.specifier) for r in requirements_for(python) if str(r.specifier).startswith("==")}
    assert {"torch", "torchaudio", "espnet"} <= exact.keys()
    assert {name: locked.get(name) for name in exact} == exact
    # and everything else setup.py names (editdistance, pytest, ...)
    assert {canonicalize_name(r.name) for r in requirements_for(python)} <= {canonicalize_name(n) for n in locked}


def other_python():
    """A Python of another minor version than this one that runs (PATH, then pyenv), or None."""
    root = shutil.which("pyenv") and subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    for minor in (12, 11, 13, 10):
        if minor == sys.version_info[1]:
            continue
        candidates = [shutil.which(f"python3.{minor}")]
        if root:
            candidates += sorted(str(p) for p in (Path(root) / "versions").glob(f"3.{minor}.*/bin/python"))
        for candidate in filter(None, candidates):
            if subprocess.run([candidate, "-c", "import sys"], capture_output=True).returncode == 0:
                return candidate, f"3.{minor}"
    return None


def test_setup_refuses_a_venv_made_by_another_python_than_asked_for(tmp_path):
    found = other_python()
    if found is None:
        pytest.skip("no Python of another minor version on PATH or under pyenv")
    python, version = found
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    proc = subprocess.run(
        [str(envcheck.REPO_ROOT / "tools" / "setup.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": python, "VENV": str(venv), "SKIP_APT": "1"},
    )
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert proc.returncode == 1
    assert f"setup: ERROR: {venv} was made with Python {mine}, not PYTHON={python} (Python {version})" in proc.stderr
    assert f"VENV={venv}-py{version.replace('.', '')}" in proc.stderr
    assert sorted(p.name for p in venv.iterdir()) == sorted(["bin", "include", "lib", "lib64", "pyvenv.cfg"])
