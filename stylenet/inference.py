"""Inference: apply a learned style, or a blend, in one forward pass.

``Stylizer`` loads an exported checkpoint once and stylizes PIL images or tensors:

    s = Stylizer("checkpoints/bank_vangogh.pt")
    out = s.stylize(Image.open("photo.jpg"), style="starry_night=0.7,the_harvest=0.3",
                    strength=0.8, preserve_color=True)

Precision ``auto``: bf16 on a GPU (fp16 where bf16 is missing) and on CPUs with AMX, fp32
otherwise; ``precision="fp32"`` gives the reference result. Strength is a pixel blend between the photo and the full-strength result (checkpoints hold no
"identity" style row to interpolate the network's parameters towards).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from stylenet.checkpoint import load_network
from stylenet.data import image_to_tensor, tensor_to_image
from stylenet.model import MIN_SIZE, NormStats, TransformerNet

log = logging.getLogger(__name__)

# Default longest side: large enough for a print-quality photo, small enough for any CPU.
DEFAULT_MAX_SIZE = 1024
# Instance-norm statistics for tiled runs come from the whole image seen at this longest side.
STATS_SIZE = 1024


class StyleSpecError(ValueError):
    pass


class ImageTooSmallError(ValueError):
    pass


StyleLike = str | int | Mapping[str, float] | Sequence[float] | Tensor


def parse_style_spec(spec: StyleLike, names: Sequence[str]) -> Tensor:
    """A style spec -> normalised weights ``[S]``.

    Accepts a name (``starry_night``), an index (``2`` or ``"2"``), a blend
    (``"starry_night=0.7,the_scream=0.3"``, weights normalised to sum to 1), an equal blend
    (``"a,b"``), a mapping ``{name: weight}`` or a weight vector.
    """
    S = len(names)
    valid = ", ".join(f"{i}:{n}" for i, n in enumerate(names))
    w = torch.zeros(S, dtype=torch.float64)

    def index_of(tok: str) -> int:
        tok = tok.strip()
        if tok.lstrip("-").isdigit():
            i = int(tok)
            if not 0 <= i < S:
                raise StyleSpecError(f"style index {i} out of range 0..{S - 1} (styles: {valid})")
            return i
        if tok not in names:
            raise StyleSpecError(f"unknown style {tok!r}; available: {valid}")
        return list(names).index(tok)

    if isinstance(spec, Tensor) or (isinstance(spec, Sequence) and not isinstance(spec, str)):
        v = torch.as_tensor(spec, dtype=torch.float64).flatten()
        if v.numel() != S:
            raise StyleSpecError(f"weight vector has {v.numel()} entries for {S} styles")
        w = v.clone()
    elif isinstance(spec, Mapping):
        for k, v in spec.items():
            w[index_of(str(k))] += float(v)
    elif isinstance(spec, int):
        w[index_of(str(spec))] = 1.0
    else:
        text = str(spec).strip()
        if not text:
            raise StyleSpecError(f"empty style spec; available: {valid}")
        for part in [p for p in text.split(",") if p.strip()]:
            if "=" in part:
                k, v = part.split("=", 1)
                try:
                    val = float(v)
                except ValueError as e:
                    raise StyleSpecError(f"bad weight {v!r} in style spec {text!r}") from e
            else:
                k, val = part, 1.0
            w[index_of(k)] += val
    if not torch.isfinite(w).all():
        raise StyleSpecError("style weights must be finite")
    if (w < 0).any():
        raise StyleSpecError(f"style weights must not be negative: {spec!r}")
    if w.sum() <= 0:
        raise StyleSpecError(f"style weights are all zero: {spec!r}")
    return (w / w.sum()).float()


def preserve_color(stylized: Tensor, original: Tensor) -> Tensor:
    """Luminance of ``stylized`` with the chrominance of ``original`` (ITU-R BT.601 YCbCr, as in
    Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer", luminance-only
    transfer). Both [.., 3, H, W] in [0, 1], same size."""
    r, g, b = stylized.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    r0, g0, b0 = original.unbind(-3)
    cb = -0.168736 * r0 - 0.331264 * g0 + 0.5 * b0
    cr = 0.5 * r0 - 0.418688 * g0 - 0.081312 * b0
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=-3)
    return out.clamp(0, 1)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _window(n: int, overlap: int, device: torch.device) -> Tensor:
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


def _tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
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


@dataclass
class StylizeOptions:
    style: StyleLike = 0
    strength: float = 1.0
    preserve_color: bool = False
    mask: Image.Image | Tensor | None = None
    mask_style: StyleLike | None = None
    max_size: int = DEFAULT_MAX_SIZE
    stroke_scale: float = 1.0
    tile: int = 0
    tile_overlap: int = 128


class Stylizer:
    """A loaded network plus everything around one forward pass."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        net: TransformerNet | None = None,
        style_names: Sequence[str] | None = None,
    ) -> None:
        if net is None:
            if checkpoint is None:
                raise ValueError("Stylizer needs a checkpoint path or a network")
            net, style_names, _ = load_network(checkpoint)
        self.style_names = list(style_names or [f"style{i}" for i in range(net.num_styles)])
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but no CUDA device is available")
        self.device = torch.device(device)
        if precision == "auto":
            if self.device.type == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                precision = "bf16" if cpu_has_amx() else "fp32"
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {list(dtypes)} or auto, got {precision!r}")
        self.dtype = dtypes[precision]
        self.dtype_name = precision
        if channels_last is None:
            # NHWC is faster on GPUs (tensor cores) and for oneDNN's CPU convolutions (measured:
            # full model at 1024x1024 on 2 cores, bf16 2.18 s -> 1.42 s, fp32 3.6 s -> 3.3 s).
            channels_last = True
        self.channels_last = channels_last
        net = net.eval().requires_grad_(False).to(self.device)
        # Half precision only for the convolutions; norm statistics are computed in fp32 inside.
        net = net.to(self.dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self._core = torch.compile(net.core, dynamic=True) if compile else net.core

    # ------------------------------------------------------------------ weights
    def weights(self, spec: StyleLike) -> Tensor:
        return parse_style_spec(spec, self.style_names)

    def weight_map(
        self,
        spec: StyleLike,
        mask: Image.Image | Tensor | None,
        mask_style: StyleLike | None,
        size: tuple[int, int],
    ) -> Tensor:
        """``[1, S]`` for a single spec, ``[1, S, h, w]`` when a mask mixes two specs."""
        wa = self.weights(spec)
        if mask is None:
            return wa[None]
        if mask_style is None:
            raise StyleSpecError("a mask needs --mask-style: the style where the mask is black")
        wb = self.weights(mask_style)
        m = mask_to_tensor(mask)[None]  # [1, 1, H, W] in [0, 1]
        m = _resize(m, size)
        return wa[None, :, None, None] * m + wb[None, :, None, None] * (1 - m)

    # ------------------------------------------------------------------ forward passes
    def _prep(self, x: Tensor) -> Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def forward(self, x: Tensor, w: Tensor, stats: NormStats | None = None) -> Tensor:
        """Network on [B, 3, H, W] in [0, 1] (any size); ``w`` is [B|1, S] or [B|1, S, H, W]."""
        if w.shape[0] == 1 and x.shape[0] > 1:
            w = w.expand(x.shape[0], *w.shape[1:])
        h, wd = x.shape[-2:]
        x, w = self._pad4(self._prep(x), w.to(self.device, torch.float32))
        y, _ = self._core(x, w, stats)
        return y[..., :h, :wd].float()

    @staticmethod
    def _pad4(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """Pad the image (and a weight map) to multiples of 4 for the two stride-2 stages."""
        h, wd = x.shape[-2:]
        ph, pw = (-h) % 4, (-wd) % 4
        if ph or pw:
            mode = "reflect" if min(h, wd) > max(ph, pw) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
            if w.dim() == 4:
                w = F.pad(w, (0, pw, 0, ph), mode="replicate")
        return x, w

    @torch.inference_mode()
    def global_stats(self, x: Tensor, w: Tensor, stats_size: int = STATS_SIZE) -> NormStats:
        """Per-layer instance-norm statistics of the whole image, seen at ``stats_size``."""
        h, wd = x.shape[-2:]
        f = min(1.0, stats_size / max(h, wd))
        small = _resize(x, (max(MIN_SIZE, round(h * f)), max(MIN_SIZE, round(wd * f))))
        ws = _resize(w, small.shape[-2:]) if w.dim() == 4 else w
        xs, ws = self._pad4(self._prep(small), ws.to(self.device, torch.float32))
        _, stats = self.net.core(xs, ws)
        return stats

    @torch.inference_mode()
    def forward_tiled(
        self, x: Tensor, w: Tensor, tile: int, overlap: int = 128, stats_size: int = STATS_SIZE
    ) -> Tensor:
        """Stylize a large [1, 3, H, W] image tile by tile with whole-image norm statistics.

        Tiles overlap by ``overlap`` pixels and are blended with raised-cosine weights, so no
        seam shows; every tile is normalised with the same statistics, so tiles agree in colour.
        The result is accumulated on the CPU: only one tile lives on the device at a time.
        """
        if x.shape[0] != 1:
            raise ValueError("tiled stylization takes one image at a time")
        _, _, H, W = x.shape
        tile = max(tile, 2 * overlap + MIN_SIZE)
        stats = self.global_stats(x, w, stats_size)
        out = torch.zeros(3, H, W)
        acc = torch.zeros(1, H, W)
        for top, th in _tile_spans(H, tile, overlap):
            for left, tw in _tile_spans(W, tile, overlap):
                xt = x[..., top : top + th, left : left + tw]
                wt = w[..., top : top + th, left : left + tw] if w.dim() == 4 else w
                y = self.forward(xt, wt, stats)[0].cpu()
                ry = overlap if H > tile else 0
                rx = overlap if W > tile else 0
                win = _window(th, ry, y.device)[:, None] * _window(tw, rx, y.device)[None, :]
                out[:, top : top + th, left : left + tw] += y * win
                acc[:, top : top + th, left : left + tw] += win
        return (out / acc).unsqueeze(0)

    # ------------------------------------------------------------------ the whole recipe
    def stylize_tensor(self, x: Tensor, opts: StylizeOptions) -> Tensor:
        """[1, 3, H, W] in [0, 1] -> stylized [1, 3, h, w] (h, w: H, W capped at max_size)."""
        if not 0.0 <= opts.strength <= 1.0:
            raise ValueError(f"strength must be within [0, 1], got {opts.strength}")
        if opts.stroke_scale <= 0:
            raise ValueError(f"stroke scale must be positive, got {opts.stroke_scale}")
        H, W = x.shape[-2:]
        if min(H, W) < MIN_SIZE:
            raise ImageTooSmallError(
                f"image is {W}x{H}; the minimum is {MIN_SIZE}x{MIN_SIZE} pixels"
            )
        f = 1.0 if not opts.max_size or max(H, W) <= opts.max_size else opts.max_size / max(H, W)
        out_size = (max(MIN_SIZE, round(H * f)), max(MIN_SIZE, round(W * f)))
        src = _resize(x, out_size)
        # Stroke scale s: the network sees the image 1/s as large, so its strokes come out s
        # times larger relative to the picture.
        g = 1.0 / opts.stroke_scale
        work_size = (max(MIN_SIZE, round(out_size[0] * g)), max(MIN_SIZE, round(out_size[1] * g)))
        xin = _resize(src, work_size)
        w = self.weight_map(opts.style, opts.mask, opts.mask_style, work_size)
        if opts.tile and max(work_size) > opts.tile:
            y = self.forward_tiled(xin, w, opts.tile, opts.tile_overlap)
        else:
            y = self.forward(xin, w).cpu()
        y = _resize(y, out_size).clamp(0, 1)
        if opts.preserve_color:
            y = preserve_color(y, src)
        if opts.strength < 1.0:
            y = opts.strength * y + (1.0 - opts.strength) * src
        return y.clamp(0, 1)

    def stylize(
        self, image: Image.Image | Tensor, style: StyleLike = 0, **kw
    ) -> Image.Image | Tensor:
        """PIL image in -> PIL image out; tensor [3, H, W] or [1, 3, H, W] in -> tensor out."""
        opts = StylizeOptions(style=style, **kw)
        if isinstance(image, Image.Image):
            x = image_to_tensor(image.convert("RGB"))[None]
            return tensor_to_image(self.stylize_tensor(x, opts))
        x = image if image.dim() == 4 else image[None]
        y = self.stylize_tensor(x.float().cpu(), opts)
        return y if image.dim() == 4 else y[0]

    __call__ = stylize


def cpu_has_amx() -> bool:
    """True on CPUs with AMX bf16 tiles (Intel Sapphire Rapids and later), where oneDNN's bf16
    convolutions run about 2x faster than fp32 (measured: full model, 1024x1024, 2 cores,
    3.3 s fp32 vs 1.4 s bf16; mean abs difference 0.6/255, max 10/255)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def mask_to_tensor(mask: Image.Image | Tensor) -> Tensor:
    """Mask -> [1, H, W] in [0, 1] (white: the first style, black: the mask style)."""
    if isinstance(mask, Image.Image):
        return image_to_tensor(mask.convert("L"))
    m = mask.float()
    if m.dim() == 2:
        m = m[None]
    if m.dim() == 3 and m.shape[0] == 3:
        m = m.mean(0, keepdim=True)
    if m.max() > 1.0:
        m = m / 255.0
    return m.clamp(0, 1)
