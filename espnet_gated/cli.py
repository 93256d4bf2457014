"""How every command-line tool fails: one line ``<tool>: error: <message>`` on stderr and an exit status.

The user's errors end a tool with that line: a bad option (argparse's errors, ESPnet's parsers'
included, and :class:`UsageError`) or a missing file (``FileNotFoundError``) exit with status 2; bad
data (``ValueError``, other ``OSError``, YAML syntax) with 1. ``--debug`` (taken by every tool and
removed before its parser sees it) or ``--log_level DEBUG`` shows the traceback instead. Any other
exception is a bug and keeps its traceback.

    @entry_point
    def main(cmd=None):
        args = get_parser().parse_args(cmd)
        ...
"""

import argparse
import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import yaml

USAGE_ERROR = 2  # a bad option or a missing file (argparse's status)
DATA_ERROR = 1  # the input files hold something the tool cannot use
TRACEBACK = "Traceback (most recent call last):"


class UsageError(ValueError):
    """A bad option found after parsing (one option contradicts another, a token the model lacks):
    exit status 2, like argparse's own errors."""


class ToolExit(SystemExit):
    """The SystemExit of a failed tool: ``code`` is the exit status, ``str()`` the line printed,
    so a caller in the same process (a test) can match the message."""

    def __init__(self, code: int, message: str):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def existing_file(value: str) -> Path:
    """argparse type: a file that exists (else a usage error naming it, before any work starts)."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: {'not a file' if path.exists() else 'no such file'}")
    return path


def existing_dir(value: str) -> Path:
    """argparse type: a directory that exists."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: {'not a directory' if path.exists() else 'no such directory'}")
    return path


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line. An OSError names its file first; a message that carries
    another process's traceback (a DataLoader worker's) keeps its first line and the error itself."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.endswith(TRACEBACK)]
    if starts:
        lines = lines[: starts[0]] + lines[-1:]
    return " ".join(" ".join(lines).split()) or type(error).__name__


def wants_traceback(argv: Sequence[str]) -> bool:
    """``--debug``, ``--log_level DEBUG`` or ``--log_level=DEBUG`` on the command line."""
    for i, arg in enumerate(argv):
        if arg == "--debug" or arg.upper() == "--LOG_LEVEL=DEBUG":
            return True
        if arg == "--log_level" and i + 1 < len(argv) and argv[i + 1].upper() == "DEBUG":
            return True
    return False


@contextmanager
def argparse_errors_raise() -> Iterator[None]:
    """Inside the block, a parser's ``error()`` raises UsageError instead of printing its whole usage
    (hundreds of lines for ESPnet's parsers) and exiting; subparsers and ESPnet's parsers included."""
    original = argparse.ArgumentParser.error

    def error(parser, message):
        raise UsageError(f"{message} (see --help)")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def _tool_name(main: Callable) -> str:
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)
    if spec is not None:  # python -m espnet_gated.bin.decode: __module__ is "__main__"
        return spec.name.rsplit(".", 1)[-1]
    if main.__module__ == "__main__":  # python espnet_gated/bin/train_progress.py
        return Path(sys.argv[0]).stem
    return main.__module__.rsplit(".", 1)[-1]


def entry_point(main: Callable[[Optional[List[str]]], object]) -> Callable[[Optional[List[str]]], object]:
    """Wrap a tool's ``main(cmd=None)``: the user's errors become one line and exit status 2 or 1
    (raised as :class:`ToolExit`); ``--debug`` is taken off the command line and lets them through."""

    @functools.wraps(main)
    def run(cmd: Optional[Sequence[str]] = None):
        argv = list(sys.argv[1:] if cmd is None else map(str, cmd))
        debug = wants_traceback(argv)
        try:
            with argparse_errors_raise():
                return main([arg for arg in argv if arg != "--debug"])
        except (UsageError, FileNotFoundError) as e:
            code, error = USAGE_ERROR, e
        except (ValueError, OSError, yaml.YAMLError) as e:
            code, error = DATA_ERROR, e
        if debug:
            raise error
        message = f"{_tool_name(main)}: error: {one_line(error)}"
        print(message, file=sys.stderr, flush=True)
        raise ToolExit(code, message) from None

    return run
