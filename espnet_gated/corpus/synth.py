"""Speech from text with espeak-ng: one call per sentence, 16 kHz mono 16-bit wavs.

espeak-ng writes 22,050 Hz wavs with ~0.35 s of trailing silence; we resample with soxr
and keep 0.1 s of silence on either side, so the model sees speech rather than padding.
Each wav is written under a temporary name and renamed, so an interrupted run never
leaves a truncated file that a re-run would take for finished.
"""

import io
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import FrozenSet, List

import numpy as np
import soundfile
import soxr

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it: sudo apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)"
SAMPLE_RATE = 16000
SILENCE_MARGIN_S = 0.1
#: amplitude below which espeak's output counts as silence
SILENCE_LEVEL = 1e-3


class EspeakError(OSError):
    """espeak-ng is missing, lacks a voice, or failed; the message says what to do (an OSError:
    the tools report it in one line, see espnet_gated.cli)."""


@dataclass(frozen=True)
class Speaker:
    """An espeak voice setting that plays one speaker: ``<voice>+<variant>``, speed, pitch."""

    voice: str  # espeak language voice, e.g. "de"
    variant: str  # espeak variant, e.g. "m3", "f2"
    speed: int  # words per minute (-s)
    pitch: int  # 0-99 (-p)

    def espeak_args(self) -> List[str]:
        return ["-v", f"{self.voice}+{self.variant}", "-s", str(self.speed), "-p", str(self.pitch)]


def require_espeak() -> str:
    """The espeak-ng executable, or an EspeakError that tells how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakError(f"{ESPEAK} is not installed (not found on PATH); {INSTALL_HINT}")
    return path


@lru_cache(maxsize=None)
def installed_variants() -> FrozenSet[str]:
    """Names usable after ``+`` in ``-v`` (espeak silently ignores unknown ones, so we check)."""
    listing = subprocess.run([require_espeak(), "--voices=variant"], capture_output=True, text=True, check=True)
    return frozenset(re.findall(r"!v/(\S+)", listing.stdout))


def check_speakers(voice: str, variants: List[str]) -> None:
    """Fail fast, before thousands of calls, on a voice or variant espeak-ng does not have."""
    unknown = sorted(set(variants) - installed_variants())
    if unknown:
        raise EspeakError(f"{ESPEAK} has no voice variant(s) {unknown}; see '{ESPEAK} --voices=variant'")
    probe = subprocess.run([require_espeak(), "-q", "-v", voice, "test"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise EspeakError(f"{ESPEAK} has no voice '{voice}' ({probe.stderr.strip()}); see '{ESPEAK} --voices'")


def trim_silence(audio: np.ndarray, sample_rate: int, margin_s: float = SILENCE_MARGIN_S) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL)
    if loud.size == 0:
        return audio
    margin = int(margin_s * sample_rate)
    return audio[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def synthesize(text: str, speaker: Speaker, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 mono samples of ``text``; an EspeakError names the command if espeak fails."""
    cmd = [require_espeak(), *speaker.espeak_args(), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        reason = proc.stderr.decode(errors="replace").strip() or "no audio"
        raise EspeakError(f"'{shlex.join(cmd)}' failed (exit {proc.returncode}): {reason}")
    audio, espeak_rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32")
    audio = trim_silence(audio, espeak_rate)
    if espeak_rate != sample_rate:
        audio = soxr.resample(audio, espeak_rate, sample_rate)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def synthesize_to(path: Path, text: str, speaker: Speaker, sample_rate: int = SAMPLE_RATE) -> int:
    """Write ``text`` as a 16-bit wav at ``path`` unless it exists; return its number of samples."""
    if path.exists():  # complete: it was renamed into place only after being written
        return soundfile.info(str(path)).frames
    audio = synthesize(text, speaker, sample_rate)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        soundfile.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return audio.size
