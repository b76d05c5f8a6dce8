"""Temporal flicker of stylized video: the mean change between consecutive output frames where
the input is still, on a clip or on synthetic still-camera and pan clips."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from stylenet.errors import DataError
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.io.images import (
    frame_to_tensor,
    resize_long,
)


def flicker_figures(frames: list[Tensor], outputs: list[Tensor]) -> dict[str, float]:
    """Flicker ratio: mean absolute frame-to-frame change of the stylized clip over the input
    clip's (1.0: the output changes no more than the input; meaningful for a still camera), and
    the motion-compensated temporal error (``stylenet.inference.temporal.temporal_error``, for pans)."""
    from stylenet.inference.temporal import temporal_error

    if len(frames) < 2:
        raise DataError("a clip needs at least two frames")

    def mean_change(clip: list[Tensor]) -> float:
        return sum(
            float((a - b).abs().mean()) for a, b in zip(clip[1:], clip[:-1], strict=True)
        ) / (len(clip) - 1)

    dx, dy = mean_change(frames), mean_change(outputs)
    return {"frames": len(frames), "input_change": dx, "output_change": dy,
            "flicker_ratio": dy / max(dx, 1e-12),
            "temporal_error": temporal_error(frames, outputs)}  # fmt: skip


def stylize_clip(
    st: Stylizer, frames: list[Tensor], style: str, temporal: float = 0.0, palette: float = 0.0
) -> list[Tensor]:
    from stylenet.inference.temporal import TemporalSmoother

    smoother = TemporalSmoother(temporal) if temporal else None
    out = []
    for x in frames:
        y = st.stylize_tensor(x, StylizeOptions(style=style, max_size=0, palette=palette))
        out.append(smoother(x, y) if smoother else y)
    return out


def read_clip(path: Path, size: int, max_frames: int = 30) -> list[Tensor]:
    from stylenet.io.video import read_frames

    frames = []
    for i, frame in enumerate(read_frames(path)):
        if i >= max_frames:
            break
        x = frame_to_tensor(frame)
        frames.append(resize_long(x, min(size, max(x.shape[-2:]))).clamp(0, 1))
    return frames


def video_flicker(
    st: Stylizer, path: Path, style: str, size: int, max_frames: int = 30, temporal: float = 0.0
) -> dict[str, float]:
    """Flicker figures of the first ``max_frames`` frames of a clip at ``size`` px."""
    frames = read_clip(path, size, max_frames)
    res = flicker_figures(frames, stylize_clip(st, frames, style, temporal))
    res["temporal"] = temporal
    return res


def still_camera_clip(
    background: Tensor,
    subject: Tensor,
    frames: int = 30,
    step: int = 4,
    noise: float = 2.0 / 255,
    seed: int = 0,
) -> list[Tensor]:
    """A clip from two photos: a still background, a subject (a disc cut from the second photo)
    crossing it ``step`` px per frame, and sensor noise of ``noise`` (std) on every frame: what a
    tripod camera sees. ``background`` [1, 3, H, W], ``subject`` [1, 3, h, w] (h, w < H, W)."""
    g = torch.Generator().manual_seed(seed)
    _, _, H, W = background.shape
    r = min(subject.shape[-2:]) // 2
    yy, xx = torch.meshgrid(torch.arange(2 * r), torch.arange(2 * r), indexing="ij")
    disc = (((yy - r + 0.5) ** 2 + (xx - r + 0.5) ** 2) < r * r).float()[None, None]
    patch = subject[..., : 2 * r, : 2 * r]
    top = (H - 2 * r) // 2
    out = []
    for i in range(frames):
        left = (i * step) % max(1, W - 2 * r)
        f = background.clone()
        region = f[..., top : top + 2 * r, left : left + 2 * r]
        f[..., top : top + 2 * r, left : left + 2 * r] = disc * patch + (1 - disc) * region
        out.append((f + noise * torch.randn(f.shape, generator=g)).clamp(0, 1))
    return out


def pan_clip(
    photo: Tensor, frames: int = 30, step: int = 3, size: tuple[int, int] = (192, 256)
) -> list[Tensor]:
    """A camera pan across a still photo, ``step`` px per frame (no noise)."""
    h, w = size
    return [photo[..., :h, i * step : i * step + w].contiguous() for i in range(frames)]
