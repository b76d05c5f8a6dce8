"""Temporal smoothing for video: where the input did not change, keep the previous output.

A feed-forward network stylizes each frame on its own, so sensor noise, compression noise and
instance-norm statistics that shift when anything in the frame moves all make the painted
texture shimmer where the scene is still. ``TemporalSmoother`` blends each stylized frame with
the previous (smoothed) result, per pixel, by how still the input is there:

    w = strength * exp(-|x_t - x_{t-1}| / tau),   y_t <- w * y_{t-1} + (1 - w) * y_t

so moving subjects (large input change) keep their fresh stylization and still regions settle.
Camera pans are followed: the previous frame is first aligned by the global integer shift that
phase correlation finds between the inputs (regions that scroll in have no history and are not
blended). Figures: ``bench/studies/flicker.json`` (``stylenet-bench --study flicker``). An earlier
experiment on the CPU-trained bank shipped before the GPU-trained one (not kept as a results
file) found that smoothing the instance-norm statistics across frames instead (exponential
average, 0.5-0.95) barely moved the flicker, so the statistics are not the cause.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Per-pixel input change (mean over RGB, images in [0, 1]) at which the blend weight falls to
# 1/e: 4/255 is about twice the noise of a well-exposed JPEG frame, so noise counts as still and
# a moving edge (tens of levels) does not.
TAU = 4.0 / 255.0
# Strength used by `stylenet-stylize` for videos unless told otherwise. Flicker ratio of the
# shipped bank_all (starry_night, 256 px, 30 frames) at 0 / 0.5 / 0.8, bench/studies/flicker.json:
# the sample clip 1.69 / 1.28 / 1.06; a synthetic still camera with a moving subject and sensor
# noise 2.65 / 1.99 / 1.67 (the 1.15 goal is not met there); a 3 px/frame pan's warped error
# 9.0 / 3.9 / 1.5. Pixels whose input changed by more than TAU are barely blended (weight e^-1 at
# TAU), so moving subjects keep their own texture; higher strengths were not measured.
DEFAULT_STRENGTH = 0.8


def global_shift(a: Tensor, b: Tensor) -> tuple[int, int]:
    """Integer (dy, dx) with ``roll(a, (dy, dx)) ~ b``, by phase correlation of the lumas
    (Kuglin & Hines 1975)."""
    la = a.float().mean(-3).reshape(-1, *a.shape[-2:])[0]
    lb = b.float().mean(-3).reshape(-1, *b.shape[-2:])[0]
    # A Hann window keeps the frame's own borders (a hard edge in every frame) from dominating
    # the correlation peak.
    h, w = la.shape
    win = (
        torch.hann_window(h, periodic=False)[:, None]
        * torch.hann_window(w, periodic=False)[None, :]
    )
    fa = torch.fft.rfft2((la - la.mean()) * win)
    fb = torch.fft.rfft2((lb - lb.mean()) * win)
    cross = fb * fa.conj()
    r = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-9), s=la.shape)
    idx = int(r.argmax())
    dy, dx = idx // w, idx % w
    return (dy - h if dy > h // 2 else dy), (dx - w if dx > w // 2 else dx)


def shift_with_mask(t: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """``t`` rolled by (dy, dx), and a [.., 1, H, W] mask that is 0 where the roll wrapped."""
    out = torch.roll(t, (dy, dx), (-2, -1))
    valid = torch.ones_like(t[..., :1, :, :])
    if dy > 0:
        valid[..., :dy, :] = 0
    elif dy < 0:
        valid[..., dy:, :] = 0
    if dx > 0:
        valid[..., :, :dx] = 0
    elif dx < 0:
        valid[..., :, dx:] = 0
    return out, valid


class TemporalSmoother:
    def __init__(
        self, strength: float = DEFAULT_STRENGTH, tau: float = TAU, align: bool = True
    ) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(
                f"temporal strength must be within 0..1 (exclusive of 1), got {strength}"
            )
        self.strength = float(strength)
        self.tau = float(tau)
        self.align = align
        self.prev_x: Tensor | None = None
        self.prev_y: Tensor | None = None

    def reset(self) -> None:
        self.prev_x = self.prev_y = None

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """``x``: the input frame, ``y``: its stylization at the same size ([1, 3, H, W])."""
        if (
            self.strength == 0
            or self.prev_x is None
            or self.prev_x.shape != x.shape
            or self.prev_y.shape != y.shape
        ):
            self.prev_x, self.prev_y = x, y
            return y
        px, py = self.prev_x, self.prev_y
        valid = torch.ones_like(x[..., :1, :, :])
        if self.align:
            dy, dx = best_shift(px, x)
            if dy or dx:
                px, valid = shift_with_mask(px, dy, dx)
                py, _ = shift_with_mask(py, dy, dx)
        change = (x - px).abs().mean(-3, keepdim=True)
        w = self.strength * torch.exp(-change / self.tau) * valid
        out = w * py + (1 - w) * y
        self.prev_x, self.prev_y = x, out
        return out


def best_shift(prev: Tensor, cur: Tensor) -> tuple[int, int]:
    """``global_shift``, kept only if it explains ``cur`` better than no shift: a moving subject
    in front of a still background can win the correlation."""
    dy, dx = global_shift(prev, cur)
    if dy or dx:
        aligned, valid = shift_with_mask(prev, dy, dx)
        if _mean_abs(cur, aligned, valid) >= _mean_abs(cur, prev, torch.ones_like(valid)):
            return 0, 0
    return dy, dx


def _mean_abs(a: Tensor, b: Tensor, valid: Tensor) -> float:
    return float(((a - b).abs() * valid).sum() / (valid.sum() * a.shape[-3]).clamp_min(1))


def temporal_error(frames: list[Tensor], outputs: list[Tensor]) -> float:
    """Motion-compensated temporal error of a clip: the mean change of the output between
    consecutive frames after aligning them by the inputs' global shift (0 for a perfectly stable
    stylization of a pure pan), in 0..255 units."""
    total, n = 0.0, 0
    for t in range(1, min(len(frames), len(outputs))):
        dy, dx = best_shift(frames[t - 1], frames[t])
        py, valid = shift_with_mask(outputs[t - 1], dy, dx)
        total += _mean_abs(outputs[t], py, valid)
        n += 1
    return 255.0 * total / max(n, 1)
