"""Quality properties of trained networks that a short CPU run can show."""

from __future__ import annotations

from stylenet.bench.studies import tiny_checkerboard


def test_bilinear_upsampling_trains_without_checkerboard():
    # The 2-px checkerboard of trained networks comes from the nearest-neighbour upsampling in
    # the decoder (a 3x3 conv over 2x2 blocks of equal values); average pooling in the VGG loss
    # does not remove it, bilinear upsampling does (BENCHMARKS.md, "Checkerboard", from
    # bench/studies/checkerboard.json). The same shows in this tiny run (a 16-channel network,
    # 60 steps, random VGG weights; its figures for both upsamplings are
    # bench/studies/checkerboard-tiny.json): with bilinear it must stay below 1.2x a photo's own
    # 2-px energy, with nearest it must not.
    assert max(tiny_checkerboard("bilinear")) < 1.2


def test_nearest_upsampling_trains_a_checkerboard():
    # The other half of the claim above: without it the bilinear test could pass for a reason
    # that has nothing to do with the upsampling (a run too short to learn any texture, say).
    assert max(tiny_checkerboard("nearest")) > 1.2
