"""Every entry point reports the user's errors in one line, ``<tool>: error: <message>``, with exit
status 2 (bad option, missing file) or 1 (bad data), and a traceback only with ``--debug``.

The entry points are discovered from the package (every module of ``espnet_gated.bin``), so a new tool
fails here until it has a missing-file case below and handles its errors (``espnet_gated.cli.entry_point``).
Each case is a subprocess, as a user runs it; the tools that import ESPnet at start-up (~10 s each) are marked
slow.
"""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import espnet_gated.bin
from espnet_gated.cli import ToolExit, entry_point, one_line, wants_traceback
from espnet_gated.data.datadir import Utterance, write_data_dir

ENTRY_POINTS = [f"espnet_gated.bin.{m.name}" for m in pkgutil.iter_modules(espnet_gated.bin.__path__)]
IMPORT_ESPNET_AT_START = {"bench", "export", "s2t_inference", "s2t_train"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

#: per tool, the arguments of a run whose input file or directory does not exist
MISSING_FILE = {
    "bench": ["--out", "{out}", "--s2t_train_config", "{missing}"],
    "bench_threads": ["--out", "{out}", "--config", "{missing}"],
    "decode": [
        "--s2t_train_config",
        "{missing}",
        "--s2t_model_file",
        "{missing}",
        "--data_root",
        "{out}",
        "--sets",
        "a",
        "--out_dir",
        "{out}",
    ],
    "export": ["--s2t_train_config", "{missing}", "--out", "{out}"],
    "format_wav": ["--in_root", "{missing}", "--out_root", "{out}", "--audio_root", "{out}", "--sets", "train"],
    "init_from": ["--src", "{out}", "--out", "{out}", "--train_config", "{missing}"],
    "make_config": ["{missing}", "--out", "{out}"],
    "make_embedded_corpus": ["--config", "{missing}", "--out", "{out}", "--audio_dir", "{out}"],
    "make_tokens": ["--data_dir", "{missing}", "--out_dir", "{out}"],
    "pack": ["--s2t_train_config", "{missing}", "--s2t_model_file", "{missing}", "--out", "{out}"],
    "upload": ["--pack", "{missing}", "--hf_repo", "user/name", "--work_dir", "{out}"],
    "s2t_inference": [
        "--s2t_train_config",
        "{missing}",
        "--s2t_model_file",
        "{missing}",
        "--data_path_and_name_and_type",
        "{missing},speech,sound",
        "--output_dir",
        "{out}",
    ],
    "s2t_train": ["--config", "{missing}"],
    "score": ["--ref_root", "{missing}", "--decode_dir", "{missing}", "--test_sets", "a", "--out", "{out}"],
    "subset_data": ["--in_root", "{missing}", "--out_root", "{out}", "--sets", "train"],
    "sweep_report": ["--runs", "a={missing}", "--out", "{out}"],
    "train_progress": ["--config", "{missing}", "--log", "{out}"],
    "prepare": ["fleurs", "--root", "{missing}", "--out", "{out}"],
    "launch": ["local", "JOB=1:1", "{out}/log.JOB", "{missing}"],
}


def tool_name(module: str) -> str:
    return module.rsplit(".", 1)[1]


def entry_point_params():
    slow = [pytest.mark.slow]
    return [pytest.param(m, marks=slow if tool_name(m) in IMPORT_ESPNET_AT_START else ()) for m in ENTRY_POINTS]


def run_tool(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300
    )


def stderr_lines(proc) -> list:
    """stderr without what importing ESPnet prints on its own: NLTK's download errors offline (README) and, on
    202611 without the optional flash_attn package, its notice."""
    noise = ("[nltk_data]", "Failed to import Flash Attention")
    return [line for line in proc.stderr.splitlines() if not line.startswith(noise)]


def assert_one_line_error(proc, tool: str, status: int) -> str:
    lines = stderr_lines(proc)
    assert proc.returncode == status, proc.stderr[-3000:]
    assert len(lines) <= 3 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith(f"{tool}: error: "), lines  # ours, not argparse's "<file>.py: error:" + usage
    assert not any(line.startswith("usage:") for line in lines)
    return lines[-1]


def test_every_entry_point_has_a_missing_file_case():
    tools = {tool_name(m) for m in ENTRY_POINTS}
    assert tools - set(MISSING_FILE) == set(), "add a MISSING_FILE case (and use espnet_gated.cli.entry_point)"
    assert set(MISSING_FILE) - tools == set()


@pytest.mark.parametrize("module", entry_point_params())
def test_bad_option_is_one_line_with_status_2(module):
    error = assert_one_line_error(run_tool(module, "--no_such_option", "1"), tool_name(module), 2)
    assert error.endswith("(see --help)")


@pytest.mark.parametrize("module", entry_point_params())
def test_missing_file_is_one_line_with_status_2(module, tmp_path):
    missing = tmp_path / "missing"
    args = [a.format(missing=missing, out=tmp_path / "out") for a in MISSING_FILE[tool_name(module)]]
    error = assert_one_line_error(run_tool(module, *args), tool_name(module), 2)
    assert str(missing) in error  # names the path


def test_bad_data_is_one_line_with_status_1_and_debug_shows_the_traceback(tmp_path):
    data = tmp_path / "data" / "train"
    write_data_dir(data, [Utterance("u1", "s", "deu", "asr", "hallo", "hallo", "/a.wav")])
    (data / "utt2num_samples").write_text("u1 16000\nu1 16000\n")
    args = ["--in_root", tmp_path / "data", "--out_root", tmp_path / "out", "--sets", "train"]
    error = assert_one_line_error(run_tool("espnet_gated.bin.subset_data", *args), "subset_data", 1)
    assert error.endswith("utt2num_samples:2: duplicate key 'u1'")
    proc = run_tool("espnet_gated.bin.subset_data", *args, "--debug")
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: " + error.split("error: ", 1)[1])

    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\nb: 3\n")
    error = assert_one_line_error(run_tool("espnet_gated.bin.make_config", broken, "--out", tmp_path / "x.yaml"),
                                  "make_config", 1)  # fmt: skip
    assert "broken.yaml" in error and "line 2" in error and not (tmp_path / "x.yaml").exists()


@pytest.mark.slow
def test_unknown_language_lists_the_tokens_the_model_knows(tmp_path, vocab):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"token_list": vocab["tokens"]}))
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("u1 /a.wav\n")
    args = ["--s2t_train_config", config, "--s2t_model_file", tmp_path / "model.pth", "--lang_sym", "<xyz>"]
    args += ["--data_path_and_name_and_type", f"{wav_scp},speech,sound", "--output_dir", tmp_path / "out"]
    error = assert_one_line_error(run_tool("espnet_gated.bin.s2t_inference", *args), "s2t_inference", 2)
    assert error == (
        f"s2t_inference: error: --lang_sym <xyz>: not in the token list of {config}; "
        "its languages: <deu> <eng> <fra> <ita>; its tasks: <asr> <st_eng>"
    )


# ---------------------------------------------------------------- the helper itself, in-process
def test_in_process_callers_get_the_status_and_the_line(capsys):
    @entry_point
    def main(cmd=None):
        raise FileNotFoundError(2, "No such file or directory", "conf/x.yaml")

    with pytest.raises(ToolExit, match=r"^test_cli_errors: error: conf/x.yaml: No such file or directory$") as e:
        main([])
    assert e.value.code == 2
    assert capsys.readouterr().err == "test_cli_errors: error: conf/x.yaml: No such file or directory\n"

    @entry_point
    def bug(cmd=None):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        bug([])


def test_a_worker_traceback_inside_a_message_is_cut_to_its_error():
    # what torch's DataLoader re-raises in the main process for an error in a worker
    message = (
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n    raise ValueError("a.wav: truncated")\nValueError: a.wav: truncated\n'
    )
    assert one_line(ValueError(message)) == (
        "Caught ValueError in DataLoader worker process 0. ValueError: a.wav: truncated"
    )
    assert one_line(ValueError("first\n  second")) == "first second"


@pytest.mark.parametrize(
    "argv, wanted",
    [(["--debug"], True), (["--log_level", "DEBUG"], True), (["--log_level=debug"], True),
     (["--log_level", "INFO"], False), (["--log_level"], False), ([], False)],
)  # fmt: skip
def test_traceback_options(argv, wanted):
    assert wants_traceback(argv) is wanted


def test_tool_runs_as_a_script_name_themselves(tmp_path):
    """s2t.sh runs train_progress.py as a script, not with -m."""
    script = Path(espnet_gated.bin.__path__[0]) / "train_progress.py"
    proc = subprocess.run([sys.executable, str(script), "--config", tmp_path / "no.yaml", "--log", tmp_path / "log"],
                          capture_output=True, text=True, env=ENV)  # fmt: skip
    assert_one_line_error(proc, "train_progress", 2)
