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
import pickle
import tempfile
import threading
import zipfile
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent,
            prefix=f".{path.stem}.",
            suffix=suffix if suffix is not None else path.suffix,
        )
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
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
    except OSError as e:  # a full disk, a folder that became read-only, a rename refused
        discard_temp(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        discard_temp(tmp)
        raise
    return path


# What ``torch.load`` raises for a file that is not a readable checkpoint, by what was seen: a
# truncated or foreign zip (RuntimeError: "failed finding central directory"), a text file
# (KeyError), random bytes or a pickle of Python objects (UnpicklingError), a short file
# (EOFError), a bad magic number (RuntimeError), an unreadable file (OSError).
TORCH_LOAD_ERRORS = (
    RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile,
    pickle.UnpicklingError,
)  # fmt: skip


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


# JPEG chroma subsampling, Pillow's ``subsampling``: 0 is 4:4:4 (colour at full resolution).
# Pillow's default, 4:2:0, halves the colour resolution in both directions, and a stylized image's
# texture lives largely in its colour: the shipped bank's starry_night outputs of 12 photos at
# 512 px score 18% worse in evaluation loss saved as q95 4:2:0 JPEGs than as PNGs, and 1% worse as
# q95 4:4:4 JPEGs (bench/studies/jpeg.json, BENCHMARKS.md "JPEG chroma").
JPEG_SUBSAMPLING = 0


def save_options(fmt: str, quality: int) -> dict[str, Any]:
    """Pillow's save options for every image the package writes: quality for JPEG and WebP, and
    4:4:4 chroma for JPEG."""
    if fmt == "JPEG":
        return {"quality": quality, "subsampling": JPEG_SUBSAMPLING}
    if fmt == "WEBP":
        return {"quality": quality}
    return {}


def encode_image(img: Image.Image, fmt: str, quality: int = 95) -> bytes:
    """An image as the bytes of a file of format ``fmt`` (Pillow's name: JPEG, PNG, WEBP)."""
    import io

    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_options(fmt, quality))
    return buf.getvalue()


def save_image(img: Image.Image, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write an image atomically; the format follows the extension (JPEG: 4:4:4 chroma)."""
    path = Path(path)
    fmt = image_format(path)
    kw = save_options(fmt, quality)
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
    # Asking os.access is not enough (root passes it for /proc, and some file systems refuse
    # files anyway): create and remove a file, as the writers will.
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".stylenet-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable ({e.strerror or e})") from e


def check_output(inp: Path | None, out: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing file without ``overwrite``."""
    if inp is not None and same_file(inp, out):
        raise OutputError(f"output {out} is the input file; refusing to overwrite an input")
    if out.is_dir():
        raise OutputError(f"output {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out} exists")
    check_writable_dir(out.parent if str(out.parent) else Path("."))
