"""Reading and checking audio: one place that turns any corpus file into 16 kHz mono.

Soundfile reads wav/flac/ogg directly; anything else (m4a, mp3, opus, ...) is decoded
with ffmpeg. Multi-channel audio is downmixed to mono by averaging the channels (a
recording whose channels cancel out then counts as silent); other sample rates are
resampled with soxr. Every problem (missing, empty, unreadable or truncated file) becomes
an :class:`AudioError` that names the file and what is wrong, instead of a stack trace from
deep inside a decoder; :func:`check_samples` rejects zero-length, NaN and silent audio.
"""

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg"}
#: peak amplitude below which an utterance counts as silent
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """A bad audio file; the message names the file (and utterance) and the problem."""


def _ffmpeg_decode(path: Path, fs: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: decoding {path.suffix} needs ffmpeg (apt-get install ffmpeg)")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(fs), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: ffmpeg cannot decode it ({reason[-1] if reason else 'no message'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def _wav_truncation(path: Path) -> Optional[str]:
    """For a RIFF/WAVE file: None, or how its data chunk falls short of its header.

    libsndfile silently reads a truncated wav (the frames that are there), so a copy cut
    short would pass as a shorter utterance; the header's data size tells.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streamed wav: size unknown
                    return None
                available = size - pos - 8
                if available < chunk_size:
                    return f"header declares {chunk_size} bytes of audio but only {available} are there"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def read_audio(path: str, fs: int = 16000) -> Tuple[np.ndarray, dict]:
    """(float32 mono samples at ``fs``, facts) for any supported file.

    facts: ``orig_fs``, ``channels`` (so callers can count conversions).
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{path}: audio file does not exist")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    if p.suffix.lower() not in SOUNDFILE_SUFFIXES:
        return _ffmpeg_decode(p, fs), {"orig_fs": fs, "channels": 1}
    try:
        truncated = _wav_truncation(p) if p.suffix.lower() == ".wav" else None
        info = soundfile.info(str(p))
        audio, orig_fs = soundfile.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, struct.error) as e:
        raise AudioError(f"{path}: unreadable or truncated audio ({e})") from None
    if truncated is None and audio.shape[0] < info.frames:
        truncated = f"header declares {info.frames} frames but only {audio.shape[0]} could be decoded"
    if truncated:
        raise AudioError(f"{path}: truncated audio file ({truncated})")
    channels = audio.shape[1]
    audio = audio.mean(axis=1)
    if orig_fs != fs:
        import soxr

        audio = soxr.resample(audio, orig_fs, fs).astype(np.float32)
    return audio, {"orig_fs": orig_fs, "channels": channels}


def check_samples(audio: np.ndarray, fs: int, where: str, min_sec: float = 0.0) -> Optional[str]:
    """None if the samples are usable, else the reason (zero length, NaN, silence, too short)."""
    if audio.size == 0:
        return f"{where}: zero-length audio"
    if not np.isfinite(audio).all():
        return f"{where}: audio contains NaN or infinite samples"
    if np.abs(audio).max() < SILENCE_PEAK:
        return f"{where}: audio is silent (peak below {SILENCE_PEAK})"
    if audio.size < min_sec * fs:
        return f"{where}: audio is {audio.size / fs:.3f} s, shorter than {min_sec} s"
    return None


def is_plain_wav(path: str, fs: int) -> bool:
    """True for a 16-bit/float mono wav already at ``fs``: usable without conversion."""
    p = Path(path)
    if p.suffix.lower() != ".wav" or not p.is_file():
        return False
    try:
        info = soundfile.info(str(p))
    except (RuntimeError, soundfile.LibsndfileError):
        return False
    return info.samplerate == fs and info.channels == 1 and info.frames > 0
