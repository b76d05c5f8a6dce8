"""Files in and out: safe image writes and streamed video (imageio-ffmpeg's bundled ffmpeg)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif_video"}
# Pillow's save format by extension (anything Pillow knows works; these are the common ones).
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip


class OutputError(ValueError):
    pass


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def check_output(inp: Path, out: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing file without ``overwrite``."""
    if out.exists() and inp.exists() and out.resolve() == inp.resolve():
        raise OutputError(f"output {out} is the input file; refusing to overwrite an input")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {parent}: {e.strerror or e}") from e
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")


def _normal_mode(path: str | os.PathLike) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600


def save_image_atomic(img: Image.Image, path: Path, quality: int = 95) -> None:
    """Write to a temporary file beside ``path`` then rename: an interrupted run never leaves a
    half-written image under the final name. Format from the extension."""
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        try:
            Image.registered_extensions()[path.suffix.lower()]
        except KeyError as e:
            raise OutputError(f"unknown image extension {path.suffix!r} for {path}") from e
        fmt = Image.registered_extensions()[path.suffix.lower()]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        kw = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        img.save(tmp, format=fmt, **kw)
        _normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class VideoInfo:
    fps: float
    size: tuple[int, int]
    frames: int | None
    has_audio: bool


def probe_video(path: Path) -> VideoInfo:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    finally:
        gen.close()
    try:
        nframes, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except Exception:
        nframes = None
    audio = _has_audio(path)
    return VideoInfo(float(meta["fps"]), tuple(meta["size"]), nframes, audio)


def _has_audio(path: Path) -> bool:
    import subprocess

    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    res = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "Audio:" in res.stderr


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Stream RGB frames as uint8 [H, W, 3] arrays, one at a time."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    try:
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        gen.close()


class VideoWriter:
    """Streamed encoder to a temporary file, renamed into place on ``close(ok=True)``."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, audio_from: Path | None):
        import imageio_ffmpeg

        self.path = path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        self.tmp = Path(tmp)
        codec = "libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264"
        kw = {}
        if audio_from is not None:
            kw["audio_path"] = str(audio_from)
            kw["audio_codec"] = "libopus" if codec == "libvpx-vp9" else "aac"
        # even sizes for yuv420p; macro_block_size=2 pads by at most one pixel
        self.gen = imageio_ffmpeg.write_frames(
            str(self.tmp), size, fps=fps, codec=codec, quality=8, macro_block_size=2,
            output_params=["-movflags", "+faststart"] if codec == "libx264" else None,
            ffmpeg_log_level="error", **kw,
        )  # fmt: skip
        self.gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        self.gen.send(np.ascontiguousarray(frame))

    def close(self, ok: bool = True) -> None:
        try:
            self.gen.close()
        finally:
            if ok:
                _normal_mode(self.tmp)
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)
