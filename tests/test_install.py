"""The installed environment is the locked one, and a venv that is not gets a message that says what differs.

The first test runs the check exactly as tools/setup.sh does (a fresh process, so the imports are real);
the others write their own locks and failing modules next to the real installation.
"""

import os
import subprocess
import sys

import pytest

from espnet_gated import envcheck

LOCK = envcheck.lock_path()
needs_lock = pytest.mark.skipif(not LOCK.exists(), reason=f"no lock for {envcheck.platform_tag()} ({LOCK})")
unlocked = pytest.mark.skipif(
    os.environ.get("ESPNET_GATED_UNLOCKED") == "1", reason="ESPNET_GATED_UNLOCKED=1: this venv is not the lock"
)


def pins(path):
    return {req.name: str(req.specifier) for req in envcheck.read_lock(path)}


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
    assert "espnet2.tasks.s2t and espnet_gated.tasks import" in proc.stdout


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
    assert text.splitlines()[-1].startswith("  what to do: tools/setup.sh")


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
