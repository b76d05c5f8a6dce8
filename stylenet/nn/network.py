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

from stylenet.io.images import pad_to_multiple
from stylenet.nn.norm import ConditionalInstanceNorm2d
from stylenet.nn.params import LayerParams, StyleParams, as_params

# Per-layer instance-norm statistics (mean, var), each [B, C, 1, 1], in network order.
NormStats = list[tuple[Tensor, Tensor]]

# Smallest input side: the 9x9 reflection pad needs > 4 px at full resolution, and the residual
# stage (1/4 resolution) needs > 1 px for its 3x3 reflection pads; 16 leaves a margin.
MIN_SIZE = 16


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
    # The residual blocks' convolutions: "conv" (a full 3x3 convolution, Johnson et al.) or
    # "separable" (a depthwise 3x3 then a pointwise 1x1, the factorisation of MobileNets, Howard
    # et al. 2017: 9*c + c*c multiply-adds per pixel instead of 9*c*c, 8x fewer at 64 channels).
    res_block: str = "conv"
    # Kernel of the first and the last convolution (full resolution). Johnson et al.: 9.
    edge_kernel: int = 9
    # Order of each decoder stage: "resize_conv" (upsample, then the 3x3 conv at the higher
    # resolution: Odena et al. 2016) or "conv_resize" (the conv and its norm at the lower
    # resolution, then upsample): 4x fewer multiply-adds, and the full-resolution tensors that
    # are padded, normalised and resized shrink to the last stage's output; or "hybrid"
    # (conv_resize for every stage but the last, which is resize_conv): the last conv, its norm
    # and its ReLU run at full resolution, where conv_resize leaves only a bilinear resize and the
    # output conv, too little to draw pixel-scale strokes (BENCHMARKS.md, "Fast network"); or
    # "conv_shuffle" (conv_resize for every stage but the last, whose resize and the output conv
    # become one conv at the lower resolution with four outputs per colour, put side by side by
    # a pixel shuffle: the sub-pixel convolution of Shi et al. 2016): the multiply-adds of
    # conv_resize's output conv, no full-resolution resize, and a free value for each output
    # pixel. It can hold a conv_resize network exactly (``shuffle_out_weights``). Measured: the
    # fastest layout, but trained on the Gram loss it draws a 2-px grid (checkerboard 60-2283x
    # the photo's; sep16-k5-cs in bench/studies/fast-candidates.json).
    decoder: str = "resize_conv"
    # Channels at quarter resolution (the last encoder conv, the residual blocks, the first
    # decoder conv); 0: 4 * base_channels, Johnson et al.'s layout. The residual blocks run on
    # 1/16 of the pixels, so widening them alone costs less time than widening the network
    # (96 in the fast layout: 1.2-1.3x; fast-candidates study). ``widen_trunk`` starts a wider
    # network from a trained narrower one.
    trunk_channels: int = 0

    @property
    def trunk(self) -> int:
        """The trunk's width, ``trunk_channels`` resolved."""
        return self.trunk_channels or 4 * self.base_channels

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def upsample2x(x: Tensor, mode: str) -> Tensor:
    """The decoder's 2x resize (``ModelConfig.upsample``: "nearest" or "bilinear")."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class SeparableConvLayer(nn.Module):
    """A depthwise 3x3 convolution followed by a pointwise 1x1 (Howard et al. 2017), reflection
    padded like ``ConvLayer``; one conditional norm follows the pair, as it follows a full conv."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.depthwise = nn.Conv2d(cin, cin, kernel, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(self.pad(x)))


RES_BLOCKS = {"conv": ConvLayer, "separable": SeparableConvLayer}
DECODERS = ("resize_conv", "conv_resize", "hybrid", "conv_shuffle")


class TransformerNet(nn.Module):
    """Feed-forward stylization network; images in [0, 1] in and out."""

    def __init__(
        self,
        num_styles: int = 1,
        base_channels: int = 32,
        num_res_blocks: int = 5,
        upsample: str = "nearest",
        res_block: str = "conv",
        edge_kernel: int = 9,
        decoder: str = "resize_conv",
        trunk_channels: int = 0,
    ):
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if res_block not in RES_BLOCKS:
            raise ValueError(f"res_block must be one of {', '.join(RES_BLOCKS)}, got {res_block!r}")
        if edge_kernel < 1 or edge_kernel % 2 == 0:
            raise ValueError(f"edge_kernel must be odd and positive, got {edge_kernel}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if trunk_channels < 0:
            raise ValueError(f"trunk_channels must be >= 0, got {trunk_channels}")
        self.config = ModelConfig(
            num_styles,
            base_channels,
            num_res_blocks,
            upsample,
            res_block,
            edge_kernel,
            decoder,
            trunk_channels,
        )
        c = base_channels
        t = self.config.trunk
        block = RES_BLOCKS[res_block]
        S = num_styles
        self.down = nn.ModuleList(
            [
                ConvLayer(3, c, edge_kernel, 1),
                ConvLayer(c, 2 * c, 3, 2),
                ConvLayer(2 * c, t, 3, 2),
            ]
        )
        self.down_norm = nn.ModuleList([ConditionalInstanceNorm2d(n, S) for n in (c, 2 * c, t)])
        self.res_conv = nn.ModuleList()
        self.res_norm = nn.ModuleList()
        for _ in range(num_res_blocks):
            self.res_conv.append(block(t, t, 3))
            self.res_conv.append(block(t, t, 3))
            self.res_norm.append(ConditionalInstanceNorm2d(t, S))
            self.res_norm.append(ConditionalInstanceNorm2d(t, S))
        self.up = nn.ModuleList([ConvLayer(t, 2 * c, 3), ConvLayer(2 * c, c, 3)])
        self.up_norm = nn.ModuleList([ConditionalInstanceNorm2d(n, S) for n in (2 * c, c)])
        # conv_shuffle: the output conv runs at half resolution with 2x2 outputs per colour.
        self.out = ConvLayer(c, 3 * 4 if decoder == "conv_shuffle" else 3, edge_kernel)
        # Dumoulin et al. (Table 2 of the appendix) normalise the output layer too, which lets each
        # style shift the palette cheaply, then squash with a sigmoid into [0, 1].
        self.out_norm = ConditionalInstanceNorm2d(3, S)
        for i, n in enumerate(self.norms()):
            n.index = i

    @property
    def num_styles(self) -> int:
        return self.config.num_styles

    def norms(self) -> list[ConditionalInstanceNorm2d]:
        """The conditional norms in the order the network applies them (their ``index``)."""
        return [*self.down_norm, *self.res_norm, *self.up_norm, self.out_norm]

    @staticmethod
    def is_row_key(key: str) -> bool:
        """State-dict keys that hold one row per style (the conditional norms' gamma and beta):
        what a bank adds, removes, reorders and merges; everything else is shared."""
        return key.rsplit(".", 1)[-1] in ConditionalInstanceNorm2d.ROW_PARAMS

    def row_params(self, rows: int | Sequence[int]) -> LayerParams:
        """The stored parameters of style row(s) ``rows``, per layer (``[B, C]`` each)."""
        idx = torch.as_tensor(rows, device=self.out_norm.gamma.device).reshape(-1).long()
        norms = self.norms()
        return LayerParams([n.gamma[idx] for n in norms], [n.beta[idx] for n in norms])

    def macs_per_pixel(self) -> float:
        """Multiply-adds of the convolutions per input pixel (the cost that sets CPU speed):
        each conv's ``k*k*cin/groups*cout`` times its output's share of the input's pixels,
        read off one small forward pass (so every layout is counted the same way)."""
        side = 64
        total = 0.0

        def count(conv: nn.Conv2d, _inp: Any, out: Tensor) -> None:
            nonlocal total
            k = conv.kernel_size[0] * conv.kernel_size[1]
            per_out = k * conv.in_channels // conv.groups * conv.out_channels
            total += per_out * out.shape[-2] * out.shape[-1] / (side * side)

        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        hooks = [m.register_forward_hook(count) for m in convs]
        try:
            p = next(self.parameters())
            with torch.no_grad():
                self(torch.zeros(1, 3, side, side, device=p.device, dtype=p.dtype), self.one_hot(0))
        finally:
            for h in hooks:
                h.remove()
        return total

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

    def forward(self, x: Tensor, style: Tensor | StyleParams) -> Tensor:
        """Stylize ``x`` ([B, 3, H, W] in [0, 1]) with ``style``: a ``StyleParams``, or a mix of
        the network's rows (``[B, S]`` or ``[B, S, H, W]``)."""
        return self.forward_with_stats(x, style)[0]

    def forward_with_stats(
        self, x: Tensor, style: Tensor | StyleParams, stats: NormStats | None = None
    ) -> tuple[Tensor, NormStats]:
        """Run the network; with ``stats`` given, use those instance-norm statistics instead of
        the input's own (tiled inference uses whole-image statistics for every tile)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        params = as_params(style)
        params.check(self.num_styles, x.shape[0])
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"image is {w}x{h}; the minimum is {MIN_SIZE}x{MIN_SIZE} pixels")
        # Two stride-2 stages: pad to a multiple of 4 so the output has the input's exact size.
        x = pad_to_multiple(x, 4)
        y, out_stats = self.core(x, params.padded(4), stats)
        return y[..., :h, :w], out_stats

    def core(
        self, x: Tensor, style: Tensor | StyleParams, stats: NormStats | None = None
    ) -> tuple[Tensor, NormStats]:
        """The network proper, for inputs whose height and width are multiples of 4 (what the
        ONNX/TorchScript exports trace and torch.compile specialises: no shape-dependent Python
        control flow in here)."""
        params = as_params(style)
        out_stats: NormStats = []
        it = iter(stats) if stats is not None else None

        def norm(layer: ConditionalInstanceNorm2d, t: Tensor, relu: bool = True) -> Tensor:
            y, s = layer(t, params, next(it) if it is not None else None, relu=relu)
            out_stats.append(s)
            return y

        y = x
        for conv, n in zip(self.down, self.down_norm, strict=True):
            y = norm(n, conv(y))
        for i in range(0, len(self.res_conv), 2):
            r = norm(self.res_norm[i], self.res_conv[i](y))
            y = y + norm(self.res_norm[i + 1], self.res_conv[i + 1](r), relu=False)
        decoder = self.config.decoder
        last = len(self.up) - 1
        for i, (conv, n) in enumerate(zip(self.up, self.up_norm, strict=True)):
            conv_first = decoder in ("conv_resize", "conv_shuffle") or (
                decoder == "hybrid" and i < last
            )
            if conv_first:
                y = norm(n, conv(y))
            if decoder == "conv_shuffle" and i == last:
                break  # the last resize is the output conv's pixel shuffle
            y = upsample2x(y, self.config.upsample)
            if not conv_first:
                y = norm(n, conv(y))
        y = self.out(y)
        if decoder == "conv_shuffle":
            y = F.pixel_shuffle(y, 2)
        y = torch.sigmoid(norm(self.out_norm, y, relu=False))
        return y, out_stats


def shuffle_out_weights(weight: Tensor, bias: Tensor, upsample: str) -> tuple[Tensor, Tensor]:
    """The output conv of a ``conv_shuffle`` network that computes what ``weight``/``bias`` (the
    output conv of a ``conv_resize`` network, ``[3, C, k, k]``) compute after its 2x ``upsample``
    resize: a resize then a conv is linear and shift-invariant per 2x2 block, so each of the four
    output pixels of a block is a conv of the half-resolution input, and a kernel of the same
    size holds it (a radius-r kernel after the resize reaches at most r//2 + 1 <= r input pixels
    away). Read off the impulse response of the resize and conv; equal away from the border,
    where the padding comes before the resize in one and after it in the other."""
    cout, cin, k, _ = weight.shape
    r = k // 2
    side = 2 * k + 3
    centre = side // 2
    impulses = torch.zeros(cin, cin, side, side, dtype=torch.float64)
    impulses[torch.arange(cin), torch.arange(cin), centre, centre] = 1.0
    resp = F.conv2d(
        upsample2x(impulses, upsample), weight.detach().double(), padding=r
    )  # [cin, cout, 2*side, 2*side]
    # The response to an impulse at half-resolution pixel p, at output block p - d, is the new
    # kernel's tap d (cross-correlation): blocks centre - r .. centre + r, read backwards.
    blocks = resp.reshape(cin, cout, side, 2, side, 2)
    window = blocks[:, :, centre - r : centre + r + 1, :, centre - r : centre + r + 1, :]
    outside = blocks.abs().sum() - window.abs().sum()
    if outside > 1e-9 * max(float(blocks.abs().sum()), 1.0):
        raise AssertionError("the resize and conv reach beyond the kernel they are folded into")
    taps = window.flip(2, 4)  # [cin, cout, ky, a, kx, b]
    new_weight = taps.permute(1, 3, 5, 0, 2, 4).reshape(cout * 4, cin, k, k)
    new_bias = bias.detach().double().repeat_interleave(4)
    return new_weight.to(weight.dtype), new_bias.to(bias.dtype)


def widen_trunk(state: Mapping[str, Tensor], net: TransformerNet) -> dict[str, Tensor]:
    """``state`` (a network whose quarter-resolution trunk is narrower than ``net``'s, otherwise
    the same) as weights for ``net`` that compute the same images: each weight keeps its values
    in its leading slice; what a new channel would add to an old one is zero (so no old channel
    reads a new one), and the rest keeps ``net``'s own initialisation (new convolutions start
    random, new norm rows at gamma 1, beta 0). The new channels start at zero effect and grow
    from the first step: the zero weights that read them get gradients (Net2WiderNet, Chen et al.
    2016, with zeros where it copies units)."""
    out: dict[str, Tensor] = {}
    for key, new in net.state_dict().items():
        old = state[key]
        if old.shape == new.shape:
            out[key] = old.clone()
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
            raise ValueError(f"{key}: {tuple(old.shape)} does not widen to {tuple(new.shape)}")
        w = new.detach().clone().to(old.dtype)
        w[tuple(slice(0, n) for n in old.shape)] = old
        # A conv's [out, in, k, k] weight: old outputs must not read new inputs. (Norm rows are
        # [styles, channels] and depthwise weights [channels, 1, k, k]: nothing reads across.)
        if w.dim() == 4 and old.shape[1] < w.shape[1]:
            w[: old.shape[0], old.shape[1] :] = 0
        out[key] = w
    return out


def complete_model_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's model arguments with every key the network takes: a key missing from a
    file written before it existed reads as its default (``upsample``: ``nearest``). Compare
    model arguments only in this form, never the stored dictionaries as they are."""
    return {**ModelConfig().to_dict(), **dict(args)}


def build_model(model_args: Mapping[str, Any]) -> TransformerNet:
    """The network a checkpoint's model arguments describe (missing keys read as defaults)."""
    return TransformerNet(**complete_model_args(model_args))


def random_network(
    num_styles: int = 2,
    base_channels: int = 8,
    num_res_blocks: int = 1,
    seed: int = 0,
    spread: float = 0.3,
    **model_args: Any,
) -> TransformerNet:
    """An untrained network whose styles differ: seeded random convolutions and rows drawn as
    gamma ~ N(1, spread), beta ~ N(0, spread), in eval mode. What benchmarks time and tests
    stylize with when no trained network is needed (the defaults are the tests' tiny size)."""
    torch.manual_seed(seed)
    net = TransformerNet(num_styles, base_channels, num_res_blocks, **model_args).eval()
    with torch.no_grad():
        for n in net.norms():
            n.gamma.normal_(1.0, spread)
            n.beta.normal_(0.0, spread)
    return net
