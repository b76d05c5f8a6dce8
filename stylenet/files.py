"""Files written safely: one atomic-write helper for every output, and the output-path checks.

Every file the package writes goes to a hidden temporary name in the destination folder and is
renamed into place, so an interrupted run never leaves a half-written file under the final name;
the temporary file is removed on any failure (and, through ``TempRegistry``, on SIGTERM).
Finished files get the permissions a plain ``open()`` would give (``0666 & ~umask``), not the
``0600`` of ``mkstemp``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from stylenet.errors import OutputError, OutputExistsError

# Pillow's save format by extension (anything Pillow knows works; these are the common ones).
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip


class TempRegistry:
    """Temporary files in flight, so a signal handler can remove them before the process ends."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._lock = threading.Lock()

    def add(self, p: Path) -> None:
        with self._lock:
            self._paths.add(p)

    def discard(self, p: Path) -> None:
        with self._lock:
            self._paths.discard(p)

    def remove_all(self) -> int:
        with self._lock:
            paths, self._paths = list(self._paths), set()
        n = 0
        for p in paths:
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n


TEMP_FILES = TempRegistry()


def default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_path_for(path: Path, suffix: str | None = None) -> Path:
    """A fresh, registered hidden file beside ``path`` (same file system, so rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent,
        prefix=f".{path.stem}.",
        suffix=suffix if suffix is not None else path.suffix,
    )
    os.close(fd)
    p = Path(tmp)
    TEMP_FILES.add(p)
    return p


def commit_temp(tmp: Path, path: Path) -> None:
    os.chmod(tmp, default_mode())
    os.replace(tmp, path)
    TEMP_FILES.discard(tmp)


def discard_temp(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)
    TEMP_FILES.discard(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        commit_temp(tmp, path)
    except BaseException:
        discard_temp(tmp)
        raise
    return path


def save_torch(obj: object, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def image_format(path: Path) -> str:
    fmt = IMAGE_FORMATS.get(path.suffix.lower()) or Image.registered_extensions().get(
        path.suffix.lower()
    )
    if fmt is None:
        raise OutputError(f"unknown image extension {path.suffix!r} for {path}")
    return fmt


def save_image(img: Image.Image, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write an image atomically; the format follows the extension."""
    path = Path(path)
    fmt = image_format(path)
    kw = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **kw))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- output checks


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and make sure files can be created in it."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder}: {e.strerror or e}") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")


def check_output(inp: Path | None, out: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing file without ``overwrite``."""
    if inp is not None and same_file(inp, out):
        raise OutputError(f"output {out} is the input file; refusing to overwrite an input")
    if out.is_dir():
        raise OutputError(f"output {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out} exists")
    check_writable_dir(out.parent if str(out.parent) else Path("."))
