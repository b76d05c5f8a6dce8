"""Image measures of a stylization beside its photo: SSIM of the luma (structure kept) and the
spectral checkerboard score (energy at the 2- and 4-pixel periods, relative to the photo's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stylenet.io.images import (
    luma,
)


def ssim_luma(a: Tensor, b: Tensor) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03) on luma."""
    x, y = luma(a), luma(b)
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).to(x)
    win = (g[:, None] * g[None, :])[None, None]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def periodic_energy(x: Tensor, period: int) -> float:
    """Fraction of the luma's (mean-removed) spectral energy on the lines of frequency 1/period
    in either axis: checkerboard and grid artifacts of stride-2 layers show up there."""
    y = luma(x)[0, 0]
    y = y - y.mean()
    h, w = y.shape
    p = torch.fft.fft2(y).abs() ** 2
    total = p.sum().clamp_min(1e-12)
    rows = {round(k * h / period) % h for k in range(1, period)}
    cols = {round(k * w / period) % w for k in range(1, period)}
    mask = torch.zeros_like(p, dtype=torch.bool)
    for r in rows:
        mask[r, :] = True
    for c in cols:
        mask[:, c] = True
    return float(p[mask].sum() / total)


def checkerboard_score(output: Tensor, photo: Tensor, period: int = 2) -> float:
    return periodic_energy(output, period) / max(periodic_energy(photo, period), 1e-12)
