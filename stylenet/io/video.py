"""Streamed video in and out with imageio-ffmpeg's bundled ffmpeg (no system ffmpeg needed).

Frames are decoded and encoded one at a time, so a long clip never sits in memory. The output is
encoded to a hidden temporary file that is renamed into place on success and removed on failure
or interruption (it is registered with ``stylenet.io.files.TEMP_FILES`` for signal handlers).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylenet.errors import VideoError
from stylenet.io.files import commit_temp, discard_temp, temp_path_for

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoInfo:
    fps: float
    size: tuple[int, int]  # (width, height)
    frames: int | None
    has_audio: bool


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _stream_info(path: Path) -> str:
    """ffmpeg's description of the file's streams (its stderr when asked for no output)."""
    res = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    return res.stderr


def probe_video(path: Path) -> VideoInfo:
    """Frame rate, size, frame count and audio of a video, or ``VideoError`` in one line."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    info = _stream_info(path)
    if "Video:" not in info:
        raise VideoError(f"{path} is not a readable video (ffmpeg finds no video stream in it)")
    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(gen)
        finally:
            gen.close()
    except (RuntimeError, StopIteration, OSError) as e:
        raise VideoError(f"{path} is not a readable video ({type(e).__name__})") from e
    try:
        nframes, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, ValueError):  # a stream ffmpeg cannot count: unknown length
        nframes = None
    return VideoInfo(float(meta["fps"]), tuple(meta["size"]), nframes, "Audio:" in info)


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Stream RGB frames as uint8 [H, W, 3] arrays, one at a time."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(gen)
    except (RuntimeError, StopIteration) as e:
        gen.close()
        raise VideoError(f"{path} is not a readable video ({type(e).__name__})") from e
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
        self.tmp = temp_path_for(path)
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
                commit_temp(self.tmp, self.path)
            else:
                discard_temp(self.tmp)
