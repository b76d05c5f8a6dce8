"""Temporal smoothing for video: still regions settle, moving ones stay fresh, pans are followed."""

from __future__ import annotations

import pytest
import torch

from stylenet.evaluation.flicker import flicker_figures, pan_clip, still_camera_clip
from stylenet.inference.temporal import TemporalSmoother, global_shift, shift_with_mask


def _smooth_img(seed, h=64, w=96):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def test_phase_correlation_finds_the_shift():
    a = _smooth_img(0, 64, 96)
    for dy, dx in [(0, 3), (-2, 5), (4, -7)]:
        b = torch.roll(a, (dy, dx), (-2, -1))
        assert global_shift(a, b) == (dy, dx)
    rolled, valid = shift_with_mask(a, 2, -3)
    assert valid[..., :2, :].sum() == 0 and valid[..., :, -3:].sum() == 0 and valid[..., 5, 5] == 1


def test_still_regions_settle_and_moving_ones_stay_fresh():
    torch.manual_seed(0)
    frames = still_camera_clip(_smooth_img(1, 64, 96), _smooth_img(2, 32, 32), frames=12, step=6)
    # A stand-in stylizer that shimmers: the frame plus fresh noise every time.
    outputs = [f + 0.05 * torch.randn_like(f) for f in frames]
    sm = TemporalSmoother(0.8)
    smoothed = [sm(x, y) for x, y in zip(frames, outputs, strict=True)]
    before = flicker_figures(frames, outputs)["flicker_ratio"]
    after = flicker_figures(frames, smoothed)["flicker_ratio"]
    # (the inputs carry sensor noise too, which keeps the blend weight near 0.5)
    assert after < 0.8 * before, (before, after)
    # where the subject is (large input change), the output is the fresh one
    last, prev = frames[-1], frames[-2]
    moving = (last - prev).abs().mean(1, keepdim=True) > 0.2
    assert moving.any()
    diff = (smoothed[-1] - outputs[-1]).abs().mean(1, keepdim=True)
    assert float(diff[moving].mean()) < 0.01


def test_pans_are_followed():
    photo = _smooth_img(3, 128, 256)
    frames = pan_clip(photo, frames=8, step=4, size=(96, 128))
    outputs = [f + 0.05 * torch.randn_like(f) for f in frames]
    sm = TemporalSmoother(0.8)
    smoothed = [sm(x, y) for x, y in zip(frames, outputs, strict=True)]
    assert (
        flicker_figures(frames, smoothed)["temporal_error"]
        < 0.6 * flicker_figures(frames, outputs)["temporal_error"]
    )


def test_strength_checked():
    with pytest.raises(ValueError, match="within 0..1"):
        TemporalSmoother(1.0)
