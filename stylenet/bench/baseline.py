"""The naive baseline every speed figure is compared with: the same architecture written the plain
way (as pytorch/examples fast_neural_style writes it): ``nn.InstanceNorm2d(affine=True)``,
reflection padding, nearest upsample + conv, fp32, eager."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class _NaiveConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(self.pad(x))


class _NaiveRes(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.n1 = _NaiveConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.c2, self.n2 = _NaiveConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.n2(self.c2(F.relu(self.n1(self.c1(x)))))


class NaiveTransformerNet(nn.Module):
    def __init__(self, base_channels: int = 32, num_res_blocks: int = 5):
        super().__init__()
        c = base_channels
        self.net = nn.Sequential(
            _NaiveConv(3, c, 9), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
            _NaiveConv(c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(),
            _NaiveConv(2 * c, 4 * c, 3, 2), nn.InstanceNorm2d(4 * c, affine=True), nn.ReLU(),
            *[_NaiveRes(4 * c) for _ in range(num_res_blocks)],
            _NaiveConv(4 * c, 2 * c, 3, upsample=True), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(),
            _NaiveConv(2 * c, c, 3, upsample=True), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
            _NaiveConv(c, 3, 9),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
