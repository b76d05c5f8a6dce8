"""Tiles for images too large for one forward pass: where they go and how they are blended."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def window(n: int, overlap: int, device: torch.device | str = "cpu") -> Tensor:
    """1-D blending weights for a tile that overlaps its neighbours by ``overlap`` pixels.

    The outer quarter of the overlap is dropped (those pixels saw the tile's padding instead of
    the neighbouring image), the middle half is a raised-cosine cross-fade (neighbours' ramps add
    up to 1), the rest weighs 1.
    """
    w = torch.ones(n, device=device)
    if overlap > 0:
        skip, ramp = overlap // 4, max(1, overlap // 2)
        t = (torch.arange(ramp, device=device, dtype=torch.float32) + 0.5) / ramp
        r = 0.5 - 0.5 * torch.cos(math.pi * t)
        head = torch.cat([torch.zeros(skip, device=device), r])[:n]
        w[: head.numel()] = head
        w[n - head.numel() :] = torch.minimum(w[n - head.numel() :], head.flip(0))
    return w.clamp_min(1e-4)


def spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) of overlapping tiles covering ``n`` pixels. Starts are multiples of 4 so
    every tile sees the stride-2 stages on the same pixel grid as the whole image would."""
    if n <= tile:
        return [(0, n)]
    step = max(4, (tile - overlap) // 4 * 4)
    starts = list(range(0, n - tile, step))
    last = (n - tile) // 4 * 4
    if not starts or last > starts[-1]:
        starts.append(last)
    return [(s, min(tile, n - s) if s != starts[-1] else n - s) for s in starts]


def tile_grid(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(top, height, left, width) of every tile of an h x w image."""
    return [
        (t, th, lft, tw) for t, th in spans(h, tile, overlap) for lft, tw in spans(w, tile, overlap)
    ]
