"""The optimization method of Gatys et al. (2016, "Image Style Transfer Using Convolutional
Neural Networks"): optimize an image's pixels so its VGG features match a photo's content and
its Gram matrices match a painting's style.

It uses the very same ``PerceptualLoss`` as feed-forward training (one loss implementation), and
is the quality reference for the fast network: ``optimize_image`` is what the evaluation harness
calls to get the loss that optimization reaches on a photo.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from stylenet.errors import OptimizeError
from stylenet.io.images import fit_long_side, luma, preserve_color, resize_long
from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures, validate_layers
from stylenet.nn.vgg import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS, LAYERS
from stylenet.runtime.device import available_memory, resolve_device

log = logging.getLogger(__name__)


@dataclass
class OptimizeResult:
    image: Tensor  # [1, 3, H, W] in [0, 1]
    losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0


def luminance3(x: Tensor) -> Tensor:
    """BT.601 luma repeated over three channels (luminance-only transfer)."""
    return luma(x).expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: Tensor, content_y: Tensor) -> Tensor:
    """Shift/scale the style luminance to the content's mean and std (Gatys et al. 2016b,
    "Preserving Color in Neural Artistic Style Transfer", Sec. 2: luminance histogram matching)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mean) / s_std * content_y.std() + content_y.mean()).clamp(0, 1)


def estimate_bytes(h: int, w: int, layers: Sequence[str]) -> int:
    """Rough peak memory of one L-BFGS step: VGG activations kept for backward (conv output and
    ReLU output per layer, x3 for gradients and workspace) up to the deepest layer used, plus 100
    L-BFGS history pairs of the image."""
    deepest = max(LAYERS[n].index for n in layers)
    act = sum(
        2 * layer.channels * (h // layer.stride) * (w // layer.stride)
        for layer in LAYERS.values()
        if layer.index <= deepest
    )
    return int(act * 4 * 3 + 3 * h * w * 4 * 2 * 100)


def _available_bytes(device: torch.device) -> int | None:
    return available_memory(device)


def optimize_image(
    content: Tensor,
    styles: Sequence[Tensor],
    style_blend: Sequence[float] | None = None,
    *,
    vgg: VGGFeatures | None = None,
    content_layers: Sequence[str] = GATYS_CONTENT_LAYERS,
    style_layers: Sequence[str] | dict[str, float] = GATYS_STYLE_LAYERS,
    content_weight: float = 1.0,
    style_weight: float = 1e5,
    tv_weight: float = 0.0,
    optimizer: str = "lbfgs",
    steps: int = 300,
    lr: float | None = None,
    init: str = "content",
    preserve_colors: bool = False,
    scales: Sequence[int] | None = None,
    device: str | torch.device = "auto",
    vgg_weights: str = "imagenet",
    vgg_weights_path: str | None = None,
    pooling: str = "max",
    seed: int = 0,
    callback: Callable[[int, Tensor, dict[str, float]], None] | None = None,
    progress: bool = False,
) -> OptimizeResult:
    """Optimize pixels; ``content`` [1, 3, H, W] and each style [1, 3, h, w] in [0, 1].

    The output has the content's size. ``scales`` (e.g. ``[256, 512]``) runs coarse-to-fine:
    each scale's result, upsampled, initialises the next, and ``steps`` are spent per scale.
    ``callback(step, image, losses)`` is called after every step (snapshots, logging).
    """
    if optimizer not in ("lbfgs", "adam"):
        raise OptimizeError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if init not in ("content", "noise", "style"):
        raise OptimizeError(f"init must be 'content', 'noise' or 'style', got {init!r}")
    if not styles:
        raise OptimizeError("at least one style image is needed")
    blend = list(style_blend) if style_blend else [1.0] * len(styles)
    if len(blend) != len(styles):
        raise OptimizeError(f"{len(blend)} blend weights for {len(styles)} style images")
    if any(b < 0 for b in blend) or sum(blend) <= 0:
        raise OptimizeError(f"style_blend must be non-negative and not all zero, got {blend}")
    blend = [b / sum(blend) for b in blend]
    content_layers = validate_layers(content_layers)
    if not isinstance(style_layers, dict):
        names = validate_layers(style_layers)
        # Gatys et al. Sec. 3: w_l = 1 / (number of active layers).
        style_layers = {n: 1.0 / len(names) for n in names}
    validate_layers(style_layers)
    if device == "auto":
        device = resolve_device("auto")
    device = torch.device(device)
    torch.manual_seed(seed)

    if vgg is None:
        vgg = VGGFeatures(
            list(content_layers) + list(style_layers), vgg_weights, vgg_weights_path, pooling
        )
    # channels_last: ~20% faster VGG convolutions on CPU (oneDNN) and on GPU tensor cores.
    vgg = vgg.to(device, memory_format=torch.channels_last)
    loss_fn = PerceptualLoss(
        vgg, content_layers, style_layers, content_weight, style_weight, tv_weight
    ).to(device)

    H, W = content.shape[-2:]
    sizes = list(scales) if scales else [max(H, W)]
    need = estimate_bytes(*_scaled_hw(H, W, sizes[-1]), list(content_layers) + list(style_layers))
    avail = _available_bytes(device)
    if avail is not None and need > avail:
        raise OptimizeError(
            f"size {sizes[-1]} px needs about {need / 2**30:.1f} GiB but {avail / 2**30:.1f} GiB "
            f"is free on {device}; use a smaller size or coarse-to-fine with fewer pixels"
        )

    content = content.to(device)
    styles = [s.to(device) for s in styles]
    if preserve_colors:
        c_y = luminance3(content)
        styles_in = [match_luminance(luminance3(s), c_y) for s in styles]
        content_in = c_y
    else:
        styles_in, content_in = styles, content

    history: list[dict[str, float]] = []
    img: Tensor | None = None
    step_offset = 0
    last: dict[str, float] = {}
    for si, size in enumerate(sizes):
        c = content_in if size >= max(H, W) else resize_long(content_in, size)
        with torch.no_grad():
            c_feats = {k: v.detach() for k, v in vgg(c).items()}
            # Blended Gram target: sum_k b_k * ||G - G_k||^2 equals ||G - sum_k b_k G_k||^2 plus a
            # constant, so one blended target gives the gradients of the weighted multi-style loss.
            grams = None
            for b, s in zip(blend, styles_in, strict=True):
                g = loss_fn.style_grams(s)
                grams = (
                    {k: b * v for k, v in g.items()}
                    if grams is None
                    else {k: grams[k] + b * v for k, v in g.items()}
                )
        if img is None:
            if init == "content":
                x0 = c.clone()
            elif init == "noise":
                x0 = torch.rand_like(c)
            else:
                x0 = F.interpolate(
                    styles_in[0], size=c.shape[-2:], mode="bilinear", align_corners=False
                )
        else:
            x0 = F.interpolate(img, size=c.shape[-2:], mode="bilinear", align_corners=False)
        x = (
            x0.detach()
            .clamp(0, 1)
            .contiguous(memory_format=torch.channels_last)
            .requires_grad_(True)
        )
        if optimizer == "lbfgs":
            # L-BFGS as in Gatys et al., one function evaluation per step (no line search) with a
            # unit step and 100 history pairs: jcjohnson/neural-style's optim.lbfgs settings.
            opt = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, history_size=100)
        else:
            # Adam at 0.02 on [0, 1] pixels (~5/255 per step), the scale of jcjohnson/neural-style's
            # -learning_rate 1e1 on [0, 255] pixels.
            opt = torch.optim.Adam([x], lr=lr or 0.02)

        def closure(opt=opt, x=x, c_feats=c_feats, grams=grams) -> Tensor:  # noqa: ANN001
            opt.zero_grad(set_to_none=True)
            terms = loss_fn.combine(vgg(x), c_feats, grams, x)
            terms["loss"].backward()
            # The channels_last VGG hands back a channels_last gradient; L-BFGS needs a flat view.
            x.grad = x.grad.contiguous()
            closure.terms = terms  # type: ignore[attr-defined]
            return terms["loss"]

        bar = None
        if progress:
            from tqdm import tqdm

            desc = f"optimize {c.shape[-1]}x{c.shape[-2]}" + (
                f" ({si + 1}/{len(sizes)})" if len(sizes) > 1 else ""
            )
            bar = tqdm(total=steps, desc=desc, unit="step")
        try:
            for i in range(steps):
                opt.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)
                terms = closure.terms  # type: ignore[attr-defined]
                last = {k: float(v.detach()) for k, v in terms.items()}
                if not math.isfinite(last["loss"]):
                    raise OptimizeError(
                        f"loss is not finite at step {step_offset + i}; lower the weights or lr"
                    )
                history.append(last)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.3g}", content=f"{last['content_loss']:.3g}",
                                    style=f"{last['style_loss']:.3g}")  # fmt: skip
                if callback is not None:
                    callback(step_offset + i + 1, x.detach(), last)
        except torch.OutOfMemoryError as e:
            raise OptimizeError(
                f"out of memory at {c.shape[-1]}x{c.shape[-2]}: use a smaller size or coarse-to-fine "
                "(e.g. scales=[256,512])"
            ) from e
        finally:
            if bar is not None:
                bar.close()
        step_offset += steps
        img = x.detach()

    assert img is not None
    if img.shape[-2:] != (H, W):
        img = F.interpolate(img, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)
    if preserve_colors:
        img = preserve_color(img, content)
    return OptimizeResult(image=img.cpu(), losses=last, history=history, steps=step_offset)


def _scaled_hw(h: int, w: int, size: int) -> tuple[int, int]:
    return fit_long_side(h, w, size)
