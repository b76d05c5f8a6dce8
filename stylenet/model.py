"""The image-transformation network: Johnson et al. (2016) layout with conditional instance norm.

Layout (Johnson et al., "Perceptual Losses for Real-Time Style Transfer", supplementary Table 1):
9x9 conv, two stride-2 3x3 convs, residual blocks, two upsampling stages, 9x9 conv out.
Two deliberate departures, both standard since:
- every normalization is a conditional instance norm (Dumoulin et al. 2017, "A Learned
  Representation for Artistic Style", Sec. 2.2): per-style gamma/beta rows, so one network holds
  N styles and blends them by mixing the rows;
- upsampling is a resize followed by a 3x3 conv instead of a transposed conv (the
  resize-convolution of Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"), which
  removes the transposed conv's uneven overlap. The resize is nearest-neighbour by default (what
  the shipped networks were trained with) or bilinear. Nearest does *not* avoid checkerboard
  artifacts here: a 3x3 conv over 2x2 blocks of equal values leaves energy at the 2-px period,
  and the project's own ablation measured 4.47x a photo's 2-px energy with nearest against 0.26x
  with bilinear (bench/studies/checkerboard.json, BENCHMARKS.md "Checkerboard").
Reflection padding everywhere (Ulyanov et al. 2016 / pytorch examples) avoids border artifacts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylenet.imaging import pad_to_multiple

# Per-layer instance-norm statistics (mean, var), each [B, C, 1, 1], in network order.
NormStats = list[tuple[Tensor, Tensor]]

# Smallest input side: the 9x9 reflection pad needs > 4 px at full resolution, and the residual
# stage (1/4 resolution) needs > 1 px for its 3x3 reflection pads; 16 leaves a margin.
MIN_SIZE = 16

# Johnson et al. use eps=1e-5 inside instance norm (torch's default), kept here.
_EPS = 1e-5


@dataclass(frozen=True)
class ModelConfig:
    num_styles: int = 1
    # Johnson et al.: 32/64/128 channels. 16 gives the "narrow" CPU model: 42k multiply-adds per
    # pixel against 154k (macs_per_pixel), 3.6x fewer.
    base_channels: int = 32
    # Johnson et al. use 5 residual blocks for 256x256 training.
    num_res_blocks: int = 5
    # Upsampling before each of the two decoder convolutions: "nearest" or "bilinear" (both
    # resize-convolutions, Odena et al. 2016; only bilinear is free of the 2-px checkerboard, see
    # the module docstring). Files written before this option read as "nearest".
    upsample: str = "nearest"

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    # Casts only when needed: no-op Cast nodes confuse the ONNX exporter's graph clean-up.
    return t if t.dtype == dtype else t.to(dtype)


def _f32(t: Tensor) -> Tensor:
    return _as(t, torch.float32)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose affine parameters are a convex mix of per-style rows.

    ``mix`` is ``[B, S]`` (the share of each style, per sample) or ``[B, S, H, W]`` (a share map
    per style: spatially varying blends, resized here to the feature map's size).
    """

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_styles = num_styles
        # Dumoulin et al. initialise gamma=1, beta=0 for every style (identity affine).
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def affine(self, mix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        w = _as(mix, self.gamma.dtype)
        if w.dim() == 2:
            g = (w @ self.gamma)[:, :, None, None]
            b = (w @ self.beta)[:, :, None, None]
            return g, b
        if w.shape[-2:] != size:
            w = F.interpolate(w, size=size, mode="bilinear", align_corners=False)
        g = torch.einsum("bshw,sc->bchw", w, self.gamma)
        b = torch.einsum("bshw,sc->bchw", w, self.beta)
        return g, b

    def forward(
        self,
        x: Tensor,
        mix: Tensor,
        stats: tuple[Tensor, Tensor] | None = None,
        relu: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if stats is None:
            # Reductions accumulate in fp32 even for bf16/fp16 inputs, so no fp32 copy is made.
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
            mean, var = _f32(mean), _f32(var)
        else:
            mean, var = stats
        g, b = self.affine(mix, (x.shape[-2], x.shape[-1]))
        # Normalise and apply gamma/beta in one pass over the activation:
        # (x - mean) / std * g + b  ==  x * scale + shift.
        scale = _f32(g) * torch.rsqrt(var + _EPS)
        shift = _f32(b) - mean * scale
        y = torch.addcmul(_as(shift, x.dtype), x, _as(scale, x.dtype))
        if relu:
            # In place when no gradient is recorded: one pass and one allocation fewer per layer.
            y = y.relu_() if not torch.is_grad_enabled() else F.relu(y)
        return y, (mean, var)


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class TransformerNet(nn.Module):
    """Feed-forward stylization network; images in [0, 1] in and out."""

    def __init__(
        self,
        num_styles: int = 1,
        base_channels: int = 32,
        num_res_blocks: int = 5,
        upsample: str = "nearest",
    ):
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        self.config = ModelConfig(num_styles, base_channels, num_res_blocks, upsample)
        c = base_channels
        S = num_styles
        self.down = nn.ModuleList(
            [ConvLayer(3, c, 9, 1), ConvLayer(c, 2 * c, 3, 2), ConvLayer(2 * c, 4 * c, 3, 2)]
        )
        self.down_norm = nn.ModuleList([ConditionalInstanceNorm2d(n, S) for n in (c, 2 * c, 4 * c)])
        self.res_conv = nn.ModuleList()
        self.res_norm = nn.ModuleList()
        for _ in range(num_res_blocks):
            self.res_conv.append(ConvLayer(4 * c, 4 * c, 3))
            self.res_conv.append(ConvLayer(4 * c, 4 * c, 3))
            self.res_norm.append(ConditionalInstanceNorm2d(4 * c, S))
            self.res_norm.append(ConditionalInstanceNorm2d(4 * c, S))
        self.up = nn.ModuleList([ConvLayer(4 * c, 2 * c, 3), ConvLayer(2 * c, c, 3)])
        self.up_norm = nn.ModuleList([ConditionalInstanceNorm2d(n, S) for n in (2 * c, c)])
        self.out = ConvLayer(c, 3, 9)
        # Dumoulin et al. (Table 2 of the appendix) normalise the output layer too, which lets each
        # style shift the palette cheaply, then squash with a sigmoid into [0, 1].
        self.out_norm = ConditionalInstanceNorm2d(3, S)

    @property
    def num_styles(self) -> int:
        return self.config.num_styles

    def norms(self) -> list[ConditionalInstanceNorm2d]:
        return [*self.down_norm, *self.res_norm, *self.up_norm, self.out_norm]

    def macs_per_pixel(self) -> float:
        """Multiply-adds of the convolutions per input pixel (the cost that sets CPU speed):
        each conv's ``k*k*cin*cout`` times its output's share of the input's pixels."""
        total = 0.0
        scale = 1.0  # output pixels per input pixel at the current stage
        for conv in self.down:
            c = conv.conv
            scale /= c.stride[0] ** 2
            total += c.kernel_size[0] * c.kernel_size[1] * c.in_channels * c.out_channels * scale
        for layer in self.res_conv:
            c = layer.conv
            total += c.kernel_size[0] * c.kernel_size[1] * c.in_channels * c.out_channels * scale
        for layer in self.up:
            scale *= 4
            c = layer.conv
            total += c.kernel_size[0] * c.kernel_size[1] * c.in_channels * c.out_channels * scale
        c = self.out.conv
        return total + c.kernel_size[0] * c.kernel_size[1] * c.in_channels * c.out_channels * scale

    def one_hot(self, index: int | Sequence[int] | Tensor, batch: int = 1) -> Tensor:
        """The mix that selects style ``index`` (one per sample, or one for ``batch`` samples)."""
        idx = torch.as_tensor(index, device=self.out_norm.gamma.device).reshape(-1)
        if idx.numel() == 1 and batch > 1:
            idx = idx.expand(batch)
        return F.one_hot(idx.long(), self.num_styles).to(self.out_norm.gamma.dtype)

    def style_weights(self, index: int | Sequence[int] | Tensor, batch: int = 1) -> Tensor:
        """Deprecated name of ``one_hot``."""
        warnings.warn("TransformerNet.style_weights is now one_hot", DeprecationWarning, 2)
        return self.one_hot(index, batch)

    def forward(self, x: Tensor, mix: Tensor) -> Tensor:
        return self.forward_with_stats(x, mix)[0]

    def forward_with_stats(
        self, x: Tensor, mix: Tensor, stats: NormStats | None = None
    ) -> tuple[Tensor, NormStats]:
        """Run the network; with ``stats`` given, use those instance-norm statistics instead of
        the input's own (tiled inference uses whole-image statistics for every tile)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        if mix.shape[0] != x.shape[0] or mix.shape[1] != self.num_styles:
            raise ValueError(
                f"mix must be [B={x.shape[0]}, S={self.num_styles}, ...], got {tuple(mix.shape)}"
            )
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"image is {w}x{h}; the minimum is {MIN_SIZE}x{MIN_SIZE} pixels")
        # Two stride-2 stages: pad to a multiple of 4 so the output has the input's exact size.
        x = pad_to_multiple(x, 4)
        if mix.dim() == 4:
            mix = pad_to_multiple(mix, 4, mode="replicate")
        y, out_stats = self.core(x, mix, stats)
        return y[..., :h, :w], out_stats

    def core(
        self, x: Tensor, mix: Tensor, stats: NormStats | None = None
    ) -> tuple[Tensor, NormStats]:
        """The network proper, for inputs whose height and width are multiples of 4 (what the
        ONNX/TorchScript exports trace and torch.compile specialises: no shape-dependent Python
        control flow in here)."""
        out_stats: NormStats = []
        it = iter(stats) if stats is not None else None

        def norm(layer: ConditionalInstanceNorm2d, t: Tensor, relu: bool = True) -> Tensor:
            y, s = layer(t, mix, next(it) if it is not None else None, relu=relu)
            out_stats.append(s)
            return y

        y = x
        for conv, n in zip(self.down, self.down_norm, strict=True):
            y = norm(n, conv(y))
        for i in range(0, len(self.res_conv), 2):
            r = norm(self.res_norm[i], self.res_conv[i](y))
            y = y + norm(self.res_norm[i + 1], self.res_conv[i + 1](r), relu=False)
        for conv, n in zip(self.up, self.up_norm, strict=True):
            if self.config.upsample == "nearest":
                y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            else:
                y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = norm(n, conv(y))
        y = torch.sigmoid(norm(self.out_norm, self.out(y), relu=False))
        return y, out_stats


def complete_model_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's model arguments with every key the network takes: a key missing from a
    file written before it existed reads as its default (``upsample``: ``nearest``). Compare
    model arguments only in this form, never the stored dictionaries as they are."""
    return {**ModelConfig().to_dict(), **dict(args)}


def build_model(model_args: dict) -> TransformerNet:
    return TransformerNet(**model_args)
