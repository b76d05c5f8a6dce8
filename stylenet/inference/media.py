"""Stylizing files: one image, a folder (recursive) or a video, with a loaded ``Stylizer``.

The command (``stylenet.cli.stylize``) parses flags and prints; everything here works on paths
and options and reports through a small ``Reporter``. Inputs are never written over; every
output is written atomically; a folder run checks what it can up front (output folder writable,
output extension known, output folder excluded from the input scan), reports each bad file once
and carries on.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from stylenet.errors import (
    ImageReadError,
    ImageTooSmallError,
    MemoryBudgetError,
    OptionError,
    OutputError,
    OutputExistsError,
    StylenetError,
    VideoError,
)
from stylenet.inference.stylizer import StylizeOptions, Stylizer, check_mask_shape
from stylenet.io.files import check_output, check_writable_dir, image_format, same_file, save_image
from stylenet.io.images import (
    IMAGE_EXTENSIONS,
    image_frames,
    image_size,
    image_to_tensor,
    list_images,
    load_image,
    tensor_to_array,
    tensor_to_image,
)
from stylenet.io.video import VideoWriter, is_video, probe_video, read_frames
from stylenet.runtime import signals

log = logging.getLogger(__name__)


class Reporter:
    """Where progress and messages go; the command line uses tqdm and stderr."""

    def note(self, msg: str) -> None:  # informational line
        log.info(msg)

    def problem(self, msg: str) -> None:  # one bad input, the run goes on
        log.warning(msg)

    def bar(self, total: int | None, desc: str, unit: str):  # noqa: ANN201
        return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


def shrink_for(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Downscale in Pillow (on 8-bit pixels) before the float conversion: a 40 MP photo capped at
    1024 px never becomes a 480 MB float tensor. Bilinear with Pillow's area support matches the
    antialiased bilinear resize of the tensor path."""
    h, w = size
    if (img.height, img.width) == (h, w):
        return img
    return img.resize((w, h), Image.BILINEAR)


def output_extension(ext: str | None) -> str | None:
    """A folder run's output extension (``jpg`` or ``.jpg``), checked before any work."""
    if ext is None:
        return None
    e = "." + ext.lstrip(".").lower()
    if e not in IMAGE_EXTENSIONS:
        raise OptionError(
            f"unknown image extension {ext!r}; use one of {', '.join(sorted(IMAGE_EXTENSIONS))}",
            option="ext",
        )
    image_format(Path("x" + e))
    return e


def resolve_image_output(inp: Path, out: Path, out_text: str) -> Path:
    """A file name for a single-image run: ``out`` itself, or ``out/<input name>`` when ``out``
    is a folder (existing, or written with a trailing slash)."""
    if out.is_dir() or out_text.endswith(("/", os.sep)):
        return out / inp.name
    if out.suffix.lower() not in IMAGE_EXTENSIONS:
        raise OutputError(
            f"output {out} has no image extension (.jpg, .png, ...); to write into a folder, "
            "end the path with /"
        )
    return out


def stylize_file(
    st: Stylizer, opts: StylizeOptions, inp: Path, out: Path, *, overwrite: bool, quality: int
) -> tuple[Image.Image, list[str]]:
    """One image in, one image out. Returns the result and notes (downscaled, auto-tiled)."""
    check_output(inp, out, overwrite)
    image_format(out)
    w, h = image_size(inp)
    st.plan(h, w, opts)  # MemoryBudgetError before anything is decoded
    img = load_image(inp)
    signals.check()
    out_size, _ = st.sizes(img.height, img.width, opts)
    x = image_to_tensor(shrink_for(img, out_size))[None]
    if opts.mask is not None:
        check_mask_shape(opts.mask, (img.height, img.width))
    res = tensor_to_image(st.stylize_tensor(x, opts))
    signals.check()  # stopped during the pass: write nothing
    save_image(res, out, quality)
    notes = list(st.last.notes)
    frames = image_frames(inp)
    if frames > 1:
        notes.append(
            f"{inp.name} has {frames} frames; only the first is stylized (to stylize every frame, "
            "convert it to a video, e.g. an .mp4)"
        )
    if out_size != (img.height, img.width):
        notes.append(
            f"scaled down from {img.width}x{img.height} to {res.width}x{res.height} (max size "
            f"{opts.max_size})"
        )
    return res, notes


@dataclass
class FolderResult:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    downscaled: int = 0
    auto_tiled: int = 0
    out: Path = Path(".")


class FolderRun:
    """Stylize every image under ``inp`` into the same layout under ``out``.

    Images are decoded ahead on worker threads while the network runs and written behind it;
    consecutive images of one size are stylized as one batch. Existing outputs are skipped
    (``overwrite`` replaces them); bad files are reported once each and counted.
    """

    def __init__(
        self,
        st: Stylizer,
        opts: StylizeOptions,
        inp: Path,
        out: Path,
        *,
        overwrite: bool = False,
        ext: str | None = None,
        batch_size: int = 0,
        quality: int = 95,
        reporter: Reporter | None = None,
    ) -> None:
        self.st, self.opts, self.inp, self.out = st, opts, inp, out
        self.overwrite = overwrite
        self.ext = output_extension(ext)
        self.batch_size = batch_size or (8 if st.device.type == "cuda" else 1)
        self.quality = quality
        self.rep = reporter or Reporter()
        self.result = FolderResult(out=out)

    # -- set-up, all before the first image ----------------------------------------------------
    def files(self) -> list[Path]:
        if same_file(self.inp, self.out):
            raise OutputError("the output folder is the input folder; choose another")
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"output {self.out} is a file; a folder run needs a folder")
        inside = Path(os.path.abspath(self.out)).is_relative_to(Path(os.path.abspath(self.inp)))
        # An output folder inside the input is left out of the scan: stylizing it again would
        # nest one level deeper on every run.
        files = list_images(self.inp, exclude=[self.out] if inside else None)
        if not files:
            raise ImageReadError(f"no images found under {self.inp}")
        check_writable_dir(self.out)
        return files

    def target(self, f: Path) -> Path:
        rel = f.relative_to(self.inp)
        if self.ext:
            rel = rel.with_suffix(self.ext)
        return self.out / rel

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> FolderResult:
        files = self.files()
        todo: list[tuple[Path, Path]] = []
        for f in files:
            dst = self.target(f)
            try:
                check_output(f, dst, self.overwrite)
            except OutputExistsError:
                self.result.skipped += 1
                continue
            except OutputError as e:
                self._fail(f, e)
                continue
            todo.append((f, dst))
        if self.result.skipped:
            self.rep.note(
                f"{self.result.skipped} output(s) exist already and are skipped (overwrite to "
                "replace them)"
            )
        self._announce_sizes(todo)
        bar = self.rep.bar(len(todo), "stylize", "img")
        try:
            self._run(todo, bar)
        finally:
            bar.close()
        if self.result.downscaled:
            self.rep.note(
                f"{self.result.downscaled} image(s) larger than {self.opts.max_size} px were "
                "scaled down (max size 0 keeps the native size)"
            )
        if self.result.auto_tiled:
            self.rep.note(
                f"{self.result.auto_tiled} image(s) were tiled to stay within the memory budget"
            )
        return self.result

    def _run(self, todo: list[tuple[Path, Path]], bar) -> None:  # noqa: ANN001
        pool = ThreadPoolExecutor(max_workers=2)
        try:
            self._stream(todo, bar, pool)
        finally:
            # On an interrupt, queued decodes and writes are dropped: a write that has not
            # started leaves no file, so a rerun simply stylizes that image again.
            pool.shutdown(wait=True, cancel_futures=True)

    def _stream(self, todo: list[tuple[Path, Path]], bar, pool: ThreadPoolExecutor) -> None:  # noqa: ANN001
        ahead = 2 * self.batch_size + 1
        loads: dict[int, Future] = {
            i: pool.submit(load_image, todo[i][0]) for i in range(min(ahead, len(todo)))
        }
        writes: list[tuple[Path, Future]] = []
        pending: list[tuple[Path, Path, torch.Tensor, tuple[int, int]]] = []
        for i, (f, dst) in enumerate(todo):
            signals.check()
            fut = loads.pop(i)
            if i + ahead < len(todo):
                loads[i + ahead] = pool.submit(load_image, todo[i + ahead][0])
            try:
                img = fut.result()
                native = (img.height, img.width)
                out_size, _ = self.st.sizes(*native, self.opts)
                t = image_to_tensor(shrink_for(img, out_size))[None]
            except StylenetError as e:
                self._fail(f, e)
                bar.update(1)
                continue
            if pending and pending[0][2].shape != t.shape:
                self._flush(pending, writes, pool, bar)
            pending.append((f, dst, t, native))
            if len(pending) >= self.batch_size:
                self._flush(pending, writes, pool, bar)
        self._flush(pending, writes, pool, bar)
        for f, w in writes:
            try:
                w.result()
            except (OSError, StylenetError) as e:
                self._fail(f, e, "write failed: ")
                self.result.done -= 1

    def _announce_sizes(self, todo: list[tuple[Path, Path]]) -> None:
        """Tell the compiled path how many images share a size, from the headers (cheap)."""
        sizes: Counter = Counter()
        for f, _ in todo[:4096]:
            try:
                w, h = image_size(f)
                sizes[self.st.sizes(h, w, self.opts)[1]] += 1
            except StylenetError:
                continue
        if sizes:
            self.st.expect(max(sizes.values()))

    def _fail(self, f: Path, e: Exception, prefix: str = "") -> None:
        msg = str(e)
        line = f"{prefix}{msg}" if str(f) in msg else f"{f}: {prefix}{msg}"
        self.result.failed.append(line)
        self.rep.problem(line)

    def _flush(self, pending, writes, pool, bar) -> None:  # noqa: ANN001
        if not pending:
            return
        x = torch.cat([t for _, _, t, _ in pending])
        try:
            y = self.st.stylize_tensor(x, self.opts)
        except (ImageTooSmallError, MemoryBudgetError) as e:
            for f, _, _, _ in pending:
                self._fail(f, e)
            bar.update(len(pending))
            pending.clear()
            return
        for (f, dst, _, native), yi in zip(pending, y, strict=True):
            img = tensor_to_image(yi)
            writes.append((f, pool.submit(save_image, img, dst, self.quality)))
            self.result.done += 1
            if (img.height, img.width) != native:
                self.result.downscaled += 1
        if self.st.last.auto_tiled:
            self.result.auto_tiled += len(pending)
        bar.update(len(pending))
        pending.clear()


@dataclass
class VideoResult:
    frames: int
    fps: float
    has_audio: bool


def stylize_video(
    st: Stylizer,
    opts: StylizeOptions,
    inp: Path,
    out: Path,
    *,
    overwrite: bool,
    reporter: Reporter | None = None,
    temporal: float = 0.0,
) -> VideoResult:
    """Stylize a clip frame by frame; fps and audio kept. ``temporal`` (0..1) blends each
    stylized frame with the previous result where the input barely changed (see
    ``stylenet.inference.temporal``)."""
    rep = reporter or Reporter()
    if not is_video(out):
        raise OutputError(f"video output needs a video extension (.mp4, .webm, ...), got {out}")
    check_output(inp, out, overwrite)
    info = probe_video(inp)
    w, h = info.size
    st.plan(h, w, opts)
    out_size, _ = st.sizes(h, w, opts)
    if info.frames:
        st.expect(info.frames)
    smoother = None
    if temporal:
        from stylenet.inference.temporal import TemporalSmoother

        smoother = TemporalSmoother(temporal)
    writer = None
    ok = False
    n = 0
    bar = rep.bar(info.frames, "frames", "frame")
    try:
        for frame in read_frames(inp):
            signals.check()
            # The frame at its output size (capped by max_size): the smoother blends it with the
            # stylized frame, pixel by pixel, so both must have that size.
            x = image_to_tensor(shrink_for(Image.fromarray(frame), out_size))[None]
            y = st.stylize_tensor(x, opts)
            if smoother is not None:
                y = smoother(x, y)
            arr = tensor_to_array(y)
            if writer is None:
                writer = VideoWriter(
                    out, (arr.shape[1], arr.shape[0]), info.fps, inp if info.has_audio else None
                )
            writer.write(arr)
            n += 1
            bar.update(1)
        ok = n > 0
    finally:
        bar.close()
        if writer is not None:
            writer.close(ok=ok)
    if not ok:
        raise VideoError(f"no frames could be decoded from {inp}")
    return VideoResult(n, info.fps, info.has_audio)
