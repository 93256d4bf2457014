"""An existing pack (the ``.zip`` of ``espnet_gated.bin.pack``, ESPnet's packed layout): extracted, or uploaded.

:func:`unpack` extracts a pack once (atomically; a changed zip is extracted again), so that
``GatedSpeech2Text.from_pretrained``, ``s2t_inference --model_tag`` and ``init_from`` load the zip, that
directory or a hub snapshot of it alike (:func:`espnet_gated.sharing.locate.fetch`). :func:`upload` puts the
extracted directory on the Hugging Face hub. Writing a pack is :mod:`espnet_gated.sharing.pack`'s job.
"""

import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from espnet_gated.utils import PathLike

ARCHIVE_SUFFIXES = (".zip",)
#: written into an unpacked directory: the archive it came from (size and time)
UNPACKED_FROM = ".unpacked_from"


class PackError(ValueError):
    """A pack cannot be made, read or uploaded; the message names the file or repository."""


def is_archive(path: PathLike) -> bool:
    return Path(path).suffix in ARCHIVE_SUFFIXES


def _stamp(archive: Path) -> str:
    st = archive.stat()
    return json.dumps({"archive": str(archive.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def unpack(archive: PathLike, parent: Optional[PathLike] = None) -> Path:
    """Extract ``archive`` into ``<parent>/<its name without .zip>/`` (``parent`` defaults to
    the archive's directory) and return that directory. A directory already extracted from
    the same archive (same size and time) is reused; otherwise the new one is extracted
    beside it and swapped in, so a failure never leaves a half-extracted model."""
    archive = Path(archive)
    out = Path(parent if parent is not None else archive.parent) / archive.name[: -len(archive.suffix)]
    stamp = _stamp(archive)
    if (out / UNPACKED_FROM).is_file() and (out / UNPACKED_FROM).read_text() == stamp:
        return out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
                if "meta.yaml" not in names:
                    raise PackError(f"{archive}: no meta.yaml (not a packed ESPnet model)")
                bad = [n for n in names if n.startswith("/") or ".." in Path(n).parts]
                if bad:
                    raise PackError(f"{archive}: member {bad[0]} would be extracted outside the model directory")
                z.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            raise PackError(f"{archive}: cannot extract ({e})") from None
        (tmp / UNPACKED_FROM).write_text(stamp)
        if out.exists():
            old = out.with_name(f".{out.name}.old{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info(f"unpacked {archive} into {out}")
    return out.resolve()


def upload(archive: PathLike, repo_id: str, parent: PathLike, private: bool = False) -> str:
    """Unpack ``archive`` under ``parent`` (:func:`unpack`) and upload that directory to the hub
    repository ``repo_id`` (created if needed); returns the repository's URL. Raises
    :class:`PackError` saying why (huggingface_hub missing, offline, not logged in), the pack
    and the unpacked directory left in place for a later upload."""
    folder = unpack(archive, parent)
    later = f"the pack is ready: {archive} (unpacked: {folder}); upload it later with: hf upload {repo_id} {folder} ."
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise PackError(
            f'uploading to the Hugging Face hub needs huggingface_hub (pip install "espnet-gated[hub]"); {later}'
        ) from None
    api = HfApi()
    try:
        url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"Upload {Path(archive).name}", ignore_patterns=[UNPACKED_FROM])  # fmt: skip
    except Exception as e:  # offline, no token, no permission: huggingface_hub raises many types
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or "offline" in reason.lower()
        why = "this machine is offline (or HF_HUB_OFFLINE is set)" if offline else f"{type(e).__name__}: {reason}"
        raise PackError(f"could not upload to {repo_id}: {why}; {later}") from e
    return str(url)
