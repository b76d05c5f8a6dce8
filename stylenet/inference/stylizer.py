"""Inference: apply a learned style, or a mix of styles, in one forward pass.

``Stylizer`` loads an exported checkpoint once and stylizes PIL images or tensors:

    s = Stylizer("checkpoints/bank_vangogh.pt")
    out = s.stylize(Image.open("photo.jpg"), style="starry_night=0.7,the_harvest=0.3",
                    strength=0.8, preserve_color=True)
    out = s.stylize(Image.open("photo.jpg"), style="the_scream", palette=1.0)  # its colours

Precision ``auto``: bf16 on a GPU (fp16 where bf16 is missing) and on CPUs with AMX, fp32
otherwise; ``precision="fp32"`` gives the reference result. Strength is a pixel blend between the
photo and the full-strength result (checkpoints hold no "identity" style row to interpolate the
network's parameters towards). Memory: every request is planned against a budget first and tiled
automatically when one pass would not fit (``stylenet.inference.memory``).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch
from PIL import Image
from torch import Tensor

from stylenet.checkpoints.format import load_network, predictor_from_checkpoint, thumbnail_bytes
from stylenet.errors import (
    ImageTooSmallError,
    MemoryBudgetError,
    OptionError,
    StyleSpecError,
)
from stylenet.inference.compile import ShapeCompiled, normalise_mode
from stylenet.inference.memory import (
    HOST_BYTES_PER_PIXEL,
    TILED_EXTRA_BYTES_PER_PIXEL,
    Plan,
    bytes_per_pixel,
    fmt_bytes,
    forward_bytes,
    resolve_budget,
)
from stylenet.inference.palette import Colours, PaletteTarget, image_colours, match, mixture
from stylenet.inference.predicted import StyleImages, concat_rows
from stylenet.inference.tiling import tile_grid, window
from stylenet.io.images import (
    cap_long_side,
    image_to_tensor,
    pad_to_multiple,
    preserve_color,
    resize,
    tensor_to_image,
)
from stylenet.nn.mix import StyleLike, parse_mix
from stylenet.nn.network import MIN_SIZE, NormStats, TransformerNet
from stylenet.nn.params import Affine, RowMix
from stylenet.nn.predictor import StylePredictor
from stylenet.runtime import signals
from stylenet.runtime.device import DTYPES, cpu_bf16_fast, resolve_device, resolve_precision

# Re-exported for code written against the earlier single-module layout.
from stylenet.nn.mix import parse_style_spec  # noqa: F401  isort: skip

log = logging.getLogger(__name__)

# Default longest side: large enough for a print-quality photo, small enough for any CPU.
DEFAULT_MAX_SIZE = 1024
# Instance-norm statistics for tiled runs come from the whole image seen at this longest side
# (smaller when the memory budget is tight, but never below MIN_STATS_SIZE: at 256 px the
# per-channel means and variances of a photo still come out within a few percent).
STATS_SIZE = 1024
MIN_STATS_SIZE = 256
# Default tile overlap: the receptive field of the network's full-resolution layers (two 9x9
# convolutions and a 3x3 at full resolution, 3x3s at 1/2 and 1/4) spans about 60 px; 128 px
# leaves the cross-fade out of the padding-affected margin.
DEFAULT_TILE_OVERLAP = 128
# Stroke scale range: below 1/4 the network sees the photo upsampled 4x and paints strokes finer
# than the photo's own pixels; above 8 it sees a 1024 px photo at 128 px, about the size it was
# trained on, and strokes cover an eighth of the picture.
STROKE_SCALE_RANGE = (0.25, 8.0)


@dataclass
class StylizeOptions:
    style: StyleLike = 0
    strength: float = 1.0
    preserve_color: bool = False
    # 0..1: how far the output's colours move to the painting's (stylenet.inference.palette).
    palette: float = 0.0
    mask: Image.Image | Tensor | None = None
    mask_style: StyleLike | None = None
    max_size: int = DEFAULT_MAX_SIZE
    stroke_scale: float = 1.0
    tile: int = 0
    tile_overlap: int = DEFAULT_TILE_OVERLAP

    def check(self) -> None:
        """Every numeric option within its range; the message names the range."""
        if not (isinstance(self.strength, (int, float)) and 0.0 <= self.strength <= 1.0):
            raise OptionError(f"must be within 0..1, got {self.strength}", option="strength")
        if not (isinstance(self.palette, (int, float)) and 0.0 <= self.palette <= 1.0):
            raise OptionError(f"must be within 0..1, got {self.palette}", option="palette")
        if self.palette and self.preserve_color:
            raise OptionError(
                "the painting's palette and the photo's colours (preserve_color) pull the "
                "colours opposite ways: choose one",
                option="palette",
            )
        lo, hi = STROKE_SCALE_RANGE
        if not (isinstance(self.stroke_scale, (int, float)) and lo <= self.stroke_scale <= hi):
            raise OptionError(
                f"must be within {lo:g}..{hi:g}, got {self.stroke_scale}", option="stroke_scale"
            )
        if self.max_size != 0 and not (
            isinstance(self.max_size, int) and self.max_size >= MIN_SIZE
        ):
            raise OptionError(
                f"must be 0 (native size) or at least {MIN_SIZE}, got {self.max_size}",
                option="max_size",
            )
        if not (isinstance(self.tile_overlap, int) and 0 <= self.tile_overlap <= 1024):
            raise OptionError(
                f"must be within 0..1024 pixels, got {self.tile_overlap}", option="tile_overlap"
            )
        if self.tile != 0:
            smallest = min_tile(self.tile_overlap)
            if not (isinstance(self.tile, int) and self.tile >= smallest):
                raise OptionError(
                    f"must be 0 (off) or at least {smallest} (twice the overlap of "
                    f"{self.tile_overlap} plus {MIN_SIZE}), got {self.tile}",
                    option="tile",
                )
        if self.mask_style is not None and self.mask is None:
            raise OptionError("a mask style needs a mask", option="mask_style")
        if self.mask is not None and self.mask_style is None:
            raise OptionError(
                "a mask needs a second style for where the mask is black", option="mask_style"
            )


def min_tile(overlap: int) -> int:
    return 2 * overlap + MIN_SIZE


@dataclass
class RunInfo:
    """What the last ``stylize_tensor`` call did (for notes in the CLI and the server)."""

    work_size: tuple[int, int] = (0, 0)
    out_size: tuple[int, int] = (0, 0)
    tile: int = 0
    auto_tiled: bool = False
    downscaled: bool = False
    notes: list[str] = field(default_factory=list)


def finish(
    y: Tensor, src: Tensor, opts: StylizeOptions, palette: PaletteTarget | None = None
) -> Tensor:
    """What follows the network, for the Stylizer and the server alike: the output resized to
    the photo's size, then the painting's palette (``palette``: the target, when
    ``opts.palette`` > 0) or colour preservation, and strength against that photo, in [0, 1]."""
    y = resize(y, tuple(src.shape[-2:])).clamp(0, 1)
    if opts.palette > 0:
        if palette is None:
            raise ValueError("opts.palette needs the palette target")
        y = match(y, palette, opts.palette)
    if opts.preserve_color:
        y = preserve_color(y, src)
    if opts.strength < 1.0:
        y = opts.strength * y + (1.0 - opts.strength) * src
    return y.clamp(0, 1)


class Stylizer:
    """A loaded network plus everything around one forward pass.

    ``predictor``: a style predictor for the network (read from the checkpoint when it has one):
    image files named in a style spec become styles (``choose``). ``vgg_weights_path`` and
    ``style_vgg`` say where the VGG16 that reads those images comes from (default: the weights
    ``stylenet-weights`` fetched; never a download at stylize time).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: str | bool = "auto",
        net: TransformerNet | None = None,
        style_names: Sequence[str] | None = None,
        memory_budget: int | None = None,
        predictor: StylePredictor | None = None,
        vgg_weights_path: str | None = None,
        style_vgg: torch.nn.Module | None = None,
    ) -> None:
        if net is None:
            if checkpoint is None:
                raise ValueError("Stylizer needs a checkpoint path or a network")
            net, style_names, ckpt = load_network(checkpoint)
            if predictor is None:
                predictor = predictor_from_checkpoint(ckpt, net, checkpoint)
            thumbnails = [thumbnail_bytes(ckpt, i) for i in range(net.num_styles)]
        else:
            thumbnails = [None] * net.num_styles
        # The paintings' thumbnails: the bank styles' palettes (``palette``).
        self._thumbnails: list[bytes | None] = thumbnails
        self._colours: dict[int, Colours] = {}
        self.source = str(checkpoint) if checkpoint is not None else "this network"
        self.style_names = list(style_names or [f"style{i}" for i in range(net.num_styles)])
        self.device = resolve_device(device)
        self.dtype_name = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.dtype_name]
        if self.device.type == "cpu" and self.dtype != torch.float32 and not cpu_bf16_fast():
            log.warning(
                "note: %s on this CPU has no fast kernels (no AMX): slower than fp32 and about "
                "5x the memory",
                self.dtype_name,
            )
        if channels_last is None:
            # CPU: NHWC is faster for oneDNN's convolutions (one-off timings of the full model at
            # 1024x1024 on 2 cores: bf16 2.18 -> 1.42 s on an AMX CPU; fp32 7.6 -> 5.5 s on an
            # AVX2 CPU; the benchmark's "naive" row, NCHW fp32, against "stylenet full" shows the
            # same: 7.3 vs 4.9 s in bench/results/20261123T113710_cpu.json).
            # CUDA: NCHW, because reflection padding is slow in channels_last on GPUs (an eager
            # profile on an H100: padding 11% of the time; eager 1024x1024 bf16 14.9 ms in
            # channels_last vs 7.6-11.8 ms in NCHW); the GPU suite has not re-measured it yet.
            channels_last = self.device.type == "cpu"
        self.channels_last = channels_last
        net = net.eval().requires_grad_(False).to(self.device)
        # Half precision only for the convolutions; norm statistics are computed in fp32 inside.
        net = net.to(self.dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.compile_mode = normalise_mode(compile)
        # Compiling pays where a shape repeats often enough to earn its compile time back; see
        # stylenet.inference.compile for the measured costs and the rule.
        self._core = ShapeCompiled(
            net.core, self.compile_mode, enabled_here=self.device.type == "cuda"
        )
        self.memory_budget = memory_budget
        # Image files as styles (through the checkpoint's style predictor, when it has one).
        where = f"checkpoint {checkpoint}" if checkpoint is not None else "this network"
        self.images = StyleImages(predictor, self.device, vgg_weights_path, where, style_vgg)
        self.last = RunInfo()
        self.progress: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------ mixes
    def mix(self, spec: StyleLike) -> Tensor:
        """A style spec of the bank's own styles -> its mix ``[S]`` (see
        ``stylenet.nn.mix.parse_mix``); a spec naming image files needs ``choose``."""
        return parse_mix(spec, self.style_names)

    @property
    def has_predictor(self) -> bool:
        return self.images.predictor is not None

    def choose(
        self,
        spec: StyleLike,
        mask_style: StyleLike | None = None,
        images: Mapping[str, bytes] | None = None,
    ) -> tuple[Tensor, Tensor | None, list[Affine] | None]:
        """Style specs that may name image files -> ``(mix [S+K], mask-style mix [S+K] or None,
        extra rows)``: the K image files of both specs are predicted (or found in the cache) and
        become columns S..S+K-1, in first-seen order; ``extra`` is None when K is 0.

        ``images`` maps tokens to encoded images given in memory (the server's uploads); with it,
        only those tokens and the bank's names are styles, and no file is ever opened."""
        tokens, styles = self._image_styles([spec, mask_style], images)
        names = [*self.style_names, *tokens]
        wa = parse_mix(spec, names)
        wb = parse_mix(mask_style, names) if mask_style is not None else None
        return wa, wb, concat_rows([rows for rows, _ in styles])

    def _image_styles(
        self, specs: Sequence[StyleLike | None], images: Mapping[str, bytes] | None
    ) -> tuple[list[str], list[tuple[list[Affine], Colours]]]:
        """The image files among ``specs`` (or, with ``images``, the uploads), in first-seen
        order, each with its predicted rows and its colours."""
        if images is not None:
            tokens = [t for t in images if t not in self.style_names]
            return tokens, [self.images.style_for_bytes(images[t], t) for t in tokens]
        tokens = self.images.image_tokens(specs, self.style_names)
        return tokens, [self.images.style_for_file(t) for t in tokens]

    def bank_colours(self, index: int) -> Colours:
        """The palette of the bank's style ``index``, read from its thumbnail."""
        hit = self._colours.get(index)
        if hit is None:
            data = self._thumbnails[index] if index < len(self._thumbnails) else None
            if data is None:
                raise OptionError(
                    f"{self.source} has no picture of style {self.style_names[index]!r} to take "
                    "its palette from (`stylenet-bank upgrade` adds the paintings' thumbnails)",
                    option="palette",
                )
            with Image.open(io.BytesIO(data)) as im:
                hit = image_colours(image_to_tensor(im.convert("RGB")))
            self._colours[index] = hit
        return hit

    def palette_target(
        self,
        spec: StyleLike,
        mask: Image.Image | Tensor | None = None,
        mask_style: StyleLike | None = None,
        size: tuple[int, int] | None = None,
        images: Mapping[str, bytes] | None = None,
    ) -> PaletteTarget:
        """The palette a style spec asks for (``stylenet.inference.palette``): the mixture of its
        styles' colours; with a mask, one per side and the mask at ``size`` (the output's)."""
        tokens, styles = self._image_styles([spec, mask_style], images)
        parts = [colours for _, colours in styles]
        names = [*self.style_names, *tokens]

        def of(s: StyleLike) -> Colours:
            w = parse_mix(s, names)
            used = [i for i in range(len(names)) if float(w[i]) != 0.0]
            S = len(self.style_names)
            cols = [self.bank_colours(i) if i < S else parts[i - S] for i in used]
            return mixture(cols, w[used])

        if mask is None or mask_style is None:
            return PaletteTarget(of(spec))
        if size is None:
            raise ValueError("a masked palette needs the output size")
        m = resize(mask_to_tensor(mask)[None], size)
        return PaletteTarget(of(spec), of(mask_style), m)

    def weights(self, spec: StyleLike) -> Tensor:
        """Earlier name of ``mix``."""
        return self.mix(spec)

    def mix_map(
        self,
        spec: StyleLike,
        mask: Image.Image | Tensor | None,
        mask_style: StyleLike | None,
        size: tuple[int, int],
    ) -> tuple[Tensor, list[Affine] | None]:
        """``([1, S+K], extra)`` for a single spec, ``([1, S+K, h, w], extra)`` when a mask
        mixes two specs (K: image files among the specs; see ``choose``)."""
        if mask is not None and mask_style is None:
            raise StyleSpecError(
                "a mask needs a second style for where the mask is black", option="mask_style"
            )
        wa, wb, extra = self.choose(spec, mask_style if mask is not None else None)
        if mask is None or wb is None:
            return wa[None], extra
        m = resize(mask_to_tensor(mask)[None], size)  # [1, 1, H, W] in [0, 1]
        return wa[None, :, None, None] * m + wb[None, :, None, None] * (1 - m), extra

    def expect(self, repeats: int | None) -> None:
        """Tell the compiled path how many passes of one shape the current run makes (a folder's
        images of one size, a video's frames); ``compile="auto"`` compiles only when they pay
        back the compile time (see ``stylenet.inference.compile``)."""
        self._core.expect(repeats)

    # ------------------------------------------------------------------ forward passes
    def _prep(self, x: Tensor) -> Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _style(self, mix: Tensor, extra: list[Affine] | None) -> Tensor | RowMix:
        """What the network is given: the mix alone (bank styles: the path every export and
        compiled graph was made for), or the mix with the extra rows it covers."""
        mix = mix.to(self.device, torch.float32)
        if mix.dim() == 4:
            mix = pad_to_multiple(mix, 4, mode="replicate")
        if not extra:
            return mix
        S = self.net.num_styles
        used = [k for k in range(mix.shape[1] - S) if bool(mix[:, S + k].any())]
        if not used:
            return mix[:, :S].contiguous()
        cols = [*range(S), *(S + k for k in used)]
        rows = [(g[used].to(self.device), b[used].to(self.device)) for g, b in extra]
        return RowMix(mix[:, cols].contiguous(), rows)

    @torch.inference_mode()
    def forward(
        self,
        x: Tensor,
        mix: Tensor,
        stats: NormStats | None = None,
        extra: list[Affine] | None = None,
    ) -> Tensor:
        """Network on [B, 3, H, W] in [0, 1] (any size); ``mix`` is [B|1, S+K] or
        [B|1, S+K, H, W], where K is the number of ``extra`` rows (per layer ``[K, C]`` gamma and
        beta, e.g. predicted from style images; 0 without them)."""
        if mix.shape[0] == 1 and x.shape[0] > 1:
            mix = mix.expand(x.shape[0], *mix.shape[1:])
        h, wd = x.shape[-2:]
        x = pad_to_multiple(self._prep(x), 4)
        y, _ = self._core(x, self._style(mix, extra), stats)
        return y[..., :h, :wd].float()

    @torch.inference_mode()
    def global_stats(
        self,
        x: Tensor,
        mix: Tensor,
        stats_size: int = STATS_SIZE,
        extra: list[Affine] | None = None,
    ) -> NormStats:
        """Per-layer instance-norm statistics of the whole image, seen at ``stats_size``."""
        h, wd = x.shape[-2:]
        small = resize(x, cap_long_side(h, wd, stats_size, MIN_SIZE))
        ms = resize(mix, small.shape[-2:]) if mix.dim() == 4 else mix
        xs = pad_to_multiple(self._prep(small), 4)
        _, stats = self.net.core(xs, self._style(ms, extra))
        return stats

    @torch.inference_mode()
    def forward_tiled(
        self,
        x: Tensor,
        mix: Tensor,
        tile: int,
        overlap: int = DEFAULT_TILE_OVERLAP,
        stats_size: int = STATS_SIZE,
        extra: list[Affine] | None = None,
    ) -> Tensor:
        """Stylize a large [1, 3, H, W] image tile by tile with whole-image norm statistics.

        Tiles overlap by ``overlap`` pixels and are blended with raised-cosine weights, so no
        seam shows; every tile is normalised with the same statistics, so tiles agree in colour.
        The image and the blended result stay on the device when it has room for them (a GPU:
        no copy per tile); otherwise they live on the CPU and one tile at a time goes over.
        """
        if x.shape[0] != 1:
            raise ValueError("tiled stylization takes one image at a time")
        _, _, H, W = x.shape
        tile = max(tile, min_tile(overlap))
        stats = self.global_stats(x, mix, stats_size, extra)
        home = self._accumulator_device(H, W)
        x = x.to(home)
        out = torch.zeros(3, H, W, device=home)
        acc = torch.zeros(1, H, W, device=home)
        grid = tile_grid(H, W, tile, overlap)
        for k, (top, th, left, tw) in enumerate(grid):
            signals.check()
            xt = x[..., top : top + th, left : left + tw]
            mt = mix[..., top : top + th, left : left + tw] if mix.dim() == 4 else mix
            y = self.forward(xt, mt, stats, extra)[0].to(home)
            ry = overlap if H > tile else 0
            rx = overlap if W > tile else 0
            win = window(th, ry, home)[:, None] * window(tw, rx, home)[None, :]
            out[:, top : top + th, left : left + tw] += y * win
            acc[:, top : top + th, left : left + tw] += win
            if self.progress is not None:
                self.progress(k + 1, len(grid))
        return (out / acc).unsqueeze(0).cpu()

    def _accumulator_device(self, h: int, w: int) -> torch.device:
        """The device, if the image (12 B/px) and the accumulators (16 B/px) fit in a quarter
        of its free memory next to the tiles; else the CPU."""
        if self.device.type != "cuda":
            return torch.device("cpu")
        from stylenet.runtime.device import available_memory

        free = available_memory(self.device) or 0
        return self.device if 28 * h * w < free // 4 else torch.device("cpu")

    # ------------------------------------------------------------------ planning
    def sizes(
        self, h: int, w: int, opts: StylizeOptions
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """(output size, working size) of an h x w image under ``opts``; an image thinner than
        the network's minimum is refused here, before it could be resized into one."""
        if min(h, w) < MIN_SIZE:
            raise ImageTooSmallError(
                f"image is {w}x{h}; the minimum is {MIN_SIZE}x{MIN_SIZE} pixels"
            )
        out_size = cap_long_side(h, w, opts.max_size, MIN_SIZE)
        g = 1.0 / opts.stroke_scale
        work = (max(MIN_SIZE, round(out_size[0] * g)), max(MIN_SIZE, round(out_size[1] * g)))
        return out_size, work

    def plan(self, h: int, w: int, opts: StylizeOptions, batch: int = 1) -> Plan:
        """How an h x w image will run: in one pass or tiled (asked for, or because one pass
        would exceed the memory budget). Raises ``MemoryBudgetError`` when nothing fits."""
        _, work = self.sizes(h, w, opts)
        c = self.net.config.base_channels
        budget = resolve_budget(self.memory_budget, self.device)
        host = batch * work[0] * work[1] * HOST_BYTES_PER_PIXEL
        one_pass = forward_bytes(c, *work, batch, self.device, self.dtype)
        if opts.tile and max(work) > opts.tile:
            return self._tiled_plan(work, opts.tile, opts.tile_overlap, budget, auto=False)
        if budget is None:
            return Plan(work, 0, one_pass, host, None)
        device_need = one_pass + (host if self.device.type == "cpu" else 0)
        host_need = host if self.device.type == "cuda" else 0
        if device_need <= budget and host_need <= budget:
            return Plan(work, 0, one_pass, host, budget)
        if batch > 1:
            raise MemoryBudgetError(
                f"a batch of {batch} at {work[1]}x{work[0]} needs about {fmt_bytes(device_need)}"
            )
        return self._tiled_plan(work, 0, opts.tile_overlap, budget, auto=True)

    def _tiled_plan(
        self, work: tuple[int, int], tile: int, overlap: int, budget: int | None, auto: bool
    ) -> Plan:
        c = self.net.config.base_channels
        H, W = work
        host = H * W * (HOST_BYTES_PER_PIXEL + TILED_EXTRA_BYTES_PER_PIXEL)
        per = bytes_per_pixel(c, self.device, self.dtype)
        on_cpu = self.device.type == "cpu"
        stats_size = STATS_SIZE
        if budget is not None:
            room = budget - (host if on_cpu else 0)
            # The largest square (multiple of 4) whose pass fits in what is left; both the tiles
            # (when chosen here) and the whole-image statistics pass must fit in it.
            side = int(math.sqrt(max(0, room) / per)) // 4 * 4 if room > 0 else 0
            stats_size = min(STATS_SIZE, side)
            if auto:
                tile = min(side, 4096)
            if (
                (auto and tile < min_tile(overlap))
                or stats_size < MIN_STATS_SIZE
                or (not on_cpu and host > budget)
            ):
                need = host + per * min(H * W, MIN_STATS_SIZE**2, min_tile(overlap) ** 2)
                raise MemoryBudgetError(
                    f"stylizing at {W}x{H} needs about {fmt_bytes(need)} even in tiles, more than "
                    f"the memory budget of {fmt_bytes(budget)}; use a smaller size or "
                    "stroke scale, or raise the budget"
                )
        sh, sw = cap_long_side(H, W, stats_size, MIN_SIZE)
        tile_need = forward_bytes(c, min(tile, H), min(tile, W), 1, self.device, self.dtype)
        stats_need = forward_bytes(c, sh, sw, 1, self.device, self.dtype)
        return Plan(work, tile, max(tile_need, stats_need), host, budget, auto, stats_size)

    # ------------------------------------------------------------------ the whole recipe
    def stylize_tensor(self, x: Tensor, opts: StylizeOptions) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> stylized [B, 3, h, w] (h, w: H, W capped at max_size)."""
        opts.check()
        H, W = x.shape[-2:]
        if min(H, W) < MIN_SIZE:
            raise ImageTooSmallError(
                f"image is {W}x{H}; the minimum is {MIN_SIZE}x{MIN_SIZE} pixels"
            )
        if opts.mask is not None:
            check_mask_shape(opts.mask, (H, W))
        out_size, work = self.sizes(H, W, opts)
        try:
            plan = self.plan(H, W, opts, batch=x.shape[0])
        except MemoryBudgetError:
            if x.shape[0] == 1:
                raise
            return torch.cat([self.stylize_tensor(xi[None], opts) for xi in x])
        if plan.tile and x.shape[0] > 1:
            return torch.cat([self.stylize_tensor(xi[None], opts) for xi in x])
        self.last = RunInfo(work, out_size, plan.tile, plan.auto_tiled, out_size != (H, W))
        if plan.auto_tiled:
            self.last.notes.append(
                f"tiled automatically ({plan.tile} px tiles) to stay within the memory budget "
                f"of {fmt_bytes(plan.budget or 0)}"
            )
        src = resize(x, out_size)
        # Stroke scale s: the network sees the image 1/s as large, so its strokes come out s
        # times larger relative to the picture.
        xin = resize(src, work)
        mix, extra = self.mix_map(opts.style, opts.mask, opts.mask_style, work)
        if plan.tile and max(work) > plan.tile:
            y = self.forward_tiled(xin, mix, plan.tile, opts.tile_overlap, plan.stats_size, extra)
        else:
            y = self.forward(xin, mix, extra=extra).cpu()
        target = None
        if opts.palette > 0:
            target = self.palette_target(opts.style, opts.mask, opts.mask_style, out_size)
        return finish(y, src, opts, target)

    def stylize(
        self, image: Image.Image | Tensor, style: StyleLike = 0, **kw
    ) -> Image.Image | Tensor:
        """PIL image in -> PIL image out; tensor [3, H, W] or [1, 3, H, W] in -> tensor out."""
        known = {f.name for f in fields(StylizeOptions)}
        unknown = set(kw) - known
        if unknown:
            raise TypeError(f"unknown stylize options: {', '.join(sorted(unknown))}")
        opts = StylizeOptions(style=style, **kw)
        if isinstance(image, Image.Image):
            x = image_to_tensor(image.convert("RGB"))[None]
            return tensor_to_image(self.stylize_tensor(x, opts))
        x = image if image.dim() == 4 else image[None]
        y = self.stylize_tensor(x.float().cpu(), opts)
        return y if image.dim() == 4 else y[0]

    __call__ = stylize


def mask_to_tensor(mask: Image.Image | Tensor) -> Tensor:
    """Mask -> [1, H, W] in [0, 1] (white: the first style, black: the mask style)."""
    if isinstance(mask, Image.Image):
        return image_to_tensor(mask.convert("L").convert("RGB"))[:1]
    m = mask.float()
    if m.dim() == 2:
        m = m[None]
    if m.dim() == 3 and m.shape[0] == 3:
        m = m.mean(0, keepdim=True)
    if m.max() > 1.0:
        m = m / 255.0
    return m.clamp(0, 1)


def _mask_hw(mask: Image.Image | Tensor) -> tuple[int, int]:
    if isinstance(mask, Image.Image):
        return mask.height, mask.width
    return tuple(mask.shape[-2:])  # type: ignore[return-value]


def check_mask_shape(mask: Image.Image | Tensor, image_hw: tuple[int, int]) -> None:
    """A mask is resized to the image, but only when their aspect ratios agree (within 2%, for
    rounding): a mask of another shape would be stretched over the wrong regions."""
    mh, mw = _mask_hw(mask)
    h, w = image_hw
    if abs((mw / mh) / (w / h) - 1) > 0.02:
        raise OptionError(
            f"the mask is {mw}x{mh} but the image is {w}x{h}: their aspect ratios differ, so the "
            "mask would be stretched; make the mask the image's shape",
            option="mask",
        )
