"""The painting's palette: match the colours of a stylized image to those of its style.

A feed-forward network keeps much of the photo's colour: The Scream comes out pale and a dark
texture comes out bright (README, "Inference": the painting's palette). ``match`` moves the output's colour distribution
onto the painting's with the linear colour transfer that Gatys et al. use for colour control
("Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017, Sec. 5.1; the
symmetric-root variant they take from Hertzmann et al. 2001, "Image Analogies"): with the RGB
means m and covariances S of the output (y) and of the painting (p),

    y' = S_p^(1/2) S_y^(-1/2) (y - m_y) + m_p

(symmetric matrix square roots), so y' has the painting's mean and covariance while each pixel
keeps its place in the output's distribution. Here the map moves only the broad colour areas of
the output (a low-pass of it, ``lowpass``), aiming at the painting's covariance less that of the
strokes (the rest), which are added back unchanged: the palette changes, the strokes keep their
contrast (``LOWPASS_CELLS`` has the measurement). ``amount`` blends between the output (0) and
the matched output (1).

A style's colours are read from the checkpoint's thumbnail of its painting, a style image's from
the image at the same size (``PALETTE_SIZE``), and a mix's are the mixture of its styles'
distributions. With a mask, each side is matched with the statistics of its own region.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stylenet.checkpoints.format import THUMBNAIL_SIZE
from stylenet.io.images import resize_long

# A style image's colours are measured at the bank thumbnails' size, so a painting gives the
# same palette whether it is a bank style or a file. Measured on the ten paintings of
# stylenet/assets/styles: at 160 px the channel means are within 0.002 and the channel
# deviations 1-7% below those of the painting at 512 px (fine detail averages out).
PALETTE_SIZE = THUMBNAIL_SIZE
# Passes of the transfer: values pushed past 0 or 1 are clipped, which takes variance away. On
# the fast bank's outputs of a 512 px photo (The Scream, the mosaic, Composition VIII), one pass
# left the channel deviations up to 19% off the painting's and the means up to 0.027; three,
# 4-6% and 0.011 at most; more passes did not bring the deviations closer.
PASSES = 3
# Only the broad colour areas move (``lowpass``: cells of 1/32 of the longer side); the strokes
# (the rest) keep their contrast. Moving every pixel with one linear map stretches the strokes'
# contrast with the areas'. Measured on the fast bank, 4 held-out photos at 512 px, five styles
# (bench/studies/palette.json; `stylenet-bench --study palette`), geometric means of the ratios
# to no palette, ours / the peer setup's Gram / mean-std: every pixel 1.22 / 0.28 / 0.61 (The
# Scream 2.25x our loss); areas of 1/16 0.90 / 0.30 / 0.53, 1/32 0.92 / 0.26 / 0.52, 1/64
# 0.96 / 0.25 / 0.54. 1/32: a Gram ratio within 0.01 of the lowest at 0.04 less of our loss.
LOWPASS_CELLS = 32
# Statistics are read from at most this many pixels (drawn at random, ``_sample``): the
# standard error of a variance from n pixels is about sqrt(2 / n) of it, 0.6% here. Reading every
# pixel, the statistics were most of the matching's cost: 34 ms for a 512x384 output on 2 cores,
# 16-19 ms with the sample; the palette study's ratios moved by at most 0.01.
STATS_PIXELS = 65_536
# Floor on the output's colour variances before S_y^(-1/2): an output that hardly varies along a
# colour direction (a flat or grey region) would have that direction's noise stretched without
# bound. 1e-4 (a deviation of 0.01, 2.5 levels of 255) caps the stretch at the painting's
# deviation / 0.01; a set bound, not a measured one.
MIN_VARIANCE = 1e-4


@dataclass(frozen=True)
class Colours:
    """The RGB distribution of an image: ``mean [3]`` and ``cov [3, 3]`` (float64, in [0, 1]
    units)."""

    mean: Tensor
    cov: Tensor


@dataclass
class PaletteTarget:
    """What ``match`` moves an output towards: one distribution, or two and the mask that says
    where each applies (1: ``first``, 0: ``second``; ``[1, 1, H, W]`` at the output's size)."""

    first: Colours
    second: Colours | None = None
    mask: Tensor | None = None


def colours_of(x: Tensor, weight: Tensor | None = None) -> Colours:
    """Mean and covariance of the pixels of ``x`` ([3, H, W], [1, 3, H, W] or [3, N]); ``weight``
    ([H, W] or broadcastable, >= 0) weighs each pixel (a mask's region). A large image is read
    at ``STATS_PIXELS`` of its pixels (``_sample``)."""
    p = x.reshape(3, -1)
    pick = _sample(p.shape[1])
    p = (p if pick is None else p[:, pick]).double()
    if weight is None:
        w = torch.full((p.shape[1],), 1.0 / p.shape[1], dtype=p.dtype)
    else:
        w = weight.expand(1, *x.shape[-2:]).reshape(-1) if x.dim() >= 3 else weight.reshape(-1)
        w = (w if pick is None else w[pick]).double().to(p.device)
        total = w.sum()
        if float(total) <= 0:
            w = torch.full_like(w, 1.0 / w.numel())
        else:
            w = w / total
    mean = p @ w
    d = p - mean[:, None]
    cov = (d * w) @ d.T
    return Colours(mean.cpu(), cov.cpu())


@functools.lru_cache(maxsize=16)
def _sample(n: int) -> Tensor | None:
    """Which of n pixels the statistics read: all of them up to ``STATS_PIXELS``, else that many
    drawn at random once per image size (fixed seed: the same image gives the same palette). A
    random draw, not a regular grid: a grid would line up with a periodic pattern (a 2-px
    checkerboard) and see only one of its phases."""
    if n <= STATS_PIXELS:
        return None
    g = torch.Generator().manual_seed(0)
    return torch.randperm(n, generator=g)[:STATS_PIXELS].sort().values


def image_colours(x: Tensor) -> Colours:
    """The palette of a painting given as an image tensor, measured at ``PALETTE_SIZE``."""
    x = x if x.dim() == 4 else x[None]
    return colours_of(resize_long(x.float(), PALETTE_SIZE).clamp(0, 1)[0])


def mixture(parts: Sequence[Colours], weights: Tensor) -> Colours:
    """The distribution of a mix: each style's pixels in proportion to its weight (a mixture's
    mean and covariance). Weights need not sum to 1; zero-weight parts drop out."""
    w = weights.double().reshape(-1)
    if w.numel() != len(parts):
        raise ValueError(f"{w.numel()} weights for {len(parts)} palettes")
    w = w / w.sum()
    mean = sum(wi * c.mean for wi, c in zip(w, parts, strict=True))
    second = sum(wi * (c.cov + torch.outer(c.mean, c.mean)) for wi, c in zip(w, parts, strict=True))
    return Colours(mean, second - torch.outer(mean, mean))


def _sqrt_pair(cov: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """Symmetric square root and inverse square root of a covariance (eigenvalues >= floor)."""
    e, v = torch.linalg.eigh(cov)
    e = e.clamp_min(floor)
    return (v * e.sqrt()) @ v.T, (v * e.rsqrt()) @ v.T


def transfer(y: Tensor, source: Colours, target: Colours) -> Tensor:
    """The linear map taking ``source``'s distribution to ``target``'s, applied to ``y``
    ([3, H, W])."""
    _, inv = _sqrt_pair(source.cov, MIN_VARIANCE)
    root, _ = _sqrt_pair(target.cov, 0.0)
    a = (root @ inv).to(y.device, y.dtype)
    b = (target.mean - (root @ inv) @ source.mean).to(y.device, y.dtype)
    return torch.einsum("ij,jhw->ihw", a, y) + b[:, None, None]


def lowpass(x: Tensor, cells: int = LOWPASS_CELLS) -> Tensor:
    """The broad colour areas of ``x`` ([3, H, W]): averaged over cells of 1/``cells`` of the
    longer side, then resized back (bilinear). ``cells=0``: ``x`` itself (no split)."""
    h, w = x.shape[-2:]
    if cells <= 0:
        return x
    k = max(1, round(max(h, w) / cells))
    small = F.avg_pool2d(x[None], k, ceil_mode=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


def _move_areas(low: Tensor, high: Tensor, target: Colours, weight: Tensor | None) -> Tensor:
    """``low`` mapped so that ``mapped + high`` has about the target's distribution: the
    strokes' own covariance is taken off the target first (what is left for the broad areas;
    directions where the strokes already carry more than the painting get none)."""
    strokes = colours_of(high, weight)
    e, v = torch.linalg.eigh(target.cov - strokes.cov)
    areas = Colours(target.mean - strokes.mean, (v * e.clamp_min(0.0)) @ v.T)
    return transfer(low, colours_of(low, weight), areas)


def match(
    y: Tensor, target: PaletteTarget, amount: float = 1.0, cells: int = LOWPASS_CELLS
) -> Tensor:
    """``y`` ([B, 3, H, W] in [0, 1]) with its colours moved ``amount`` (0..1) of the way to the
    target's palette; each image of a batch is matched on its own statistics. ``cells``: the
    areas' scale (``lowpass``; 0: one map for every pixel, strokes included)."""
    if amount <= 0:
        return y
    masked = target.mask is not None and target.second is not None
    out = []
    for yi in y:
        m = target.mask.reshape(1, *yi.shape[-2:]).to(yi.dtype) if masked else None
        moved = yi
        for _ in range(PASSES):
            low = lowpass(moved, cells)
            high = moved - low
            if m is None:
                areas = _move_areas(low, high, target.first, None)
            else:
                areas = m * _move_areas(low, high, target.first, m) + (1 - m) * _move_areas(
                    low, high, target.second, 1 - m
                )
            moved = (areas + high).clamp(0, 1)
        out.append(yi + amount * (moved - yi) if amount < 1 else moved)
    return torch.stack(out).clamp(0, 1)
