"""Perceptual losses on frozen VGG16 features: content, Gram style, total variation, and the
painting's colours.

One implementation serves the feed-forward training (``PerceptualLoss``), the per-image
optimization method (``stylenet.optimization.gatys``) and the evaluation harness.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import vgg16

from stylenet.errors import LayerNameError, OptionError
from stylenet.losses.weights import resolve_vgg16_features
from stylenet.nn.vgg import (
    DEFAULT_CONTENT_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG16_LAYERS,
    VGG19_ONLY,
    default_layer_weights,
)

log = logging.getLogger(__name__)


def validate_layers(names: Iterable[str]) -> list[str]:
    names = list(names)
    for n in names:
        if n not in VGG16_LAYERS:
            hint = f" ({n} exists only in VGG19; this loss uses VGG16)" if n in VGG19_ONLY else ""
            raise LayerNameError(
                f"unknown VGG layer {n!r}{hint}; valid layers: {', '.join(VGG16_LAYERS)}"
            )
    return names


def expand_layer_spec(spec: str | Sequence[str]) -> list[str]:
    """Layer sets as users write them in sweeps.

    ``relu1-3`` -> the first ReLU of blocks 1..3 (``relu1_1, relu2_1, relu3_1``), the layer sets
    of Gatys et al. 2016, Fig. 3; ``relu2`` -> ``relu2_1``; ``relu1_2,relu3_3`` -> as written.
    """
    if not isinstance(spec, str):
        return validate_layers(spec)
    out: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = re.fullmatch(r"relu(\d)-(\d)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            out += [f"relu{i}_1" for i in range(a, b + 1)]
        elif re.fullmatch(r"relu\d", part):
            out.append(f"{part}_1")
        else:
            out.append(part)
    return validate_layers(out)


class VGGFeatures(nn.Module):
    """Frozen VGG16 ``features`` truncated after the deepest requested layer.

    ``weights``: "imagenet" (resolved by ``stylenet.losses.weights``; an error if not found) or "random"
    (tests only; logged as a warning); ``state_dict``: weights already resolved by the caller. ``pooling``: "max" (torchvision) or "avg" (Gatys et al.
    2016, Sec. 2, report slightly better results with average pooling for optimization).
    """

    def __init__(
        self,
        layers: Iterable[str],
        weights: str = "imagenet",
        weights_path: str | None = None,
        pooling: str = "max",
        state_dict: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.layers = sorted(set(validate_layers(layers)), key=VGG16_LAYERS.__getitem__)
        if not self.layers:
            raise LayerNameError("VGGFeatures needs at least one layer")
        last = VGG16_LAYERS[self.layers[-1]]
        net = vgg16(weights=None).features[: last + 1]
        if state_dict is not None:  # weights the caller already resolved
            net.load_state_dict({k: v.float() for k, v in state_dict.items()
                                 if int(k.split(".")[0]) <= last})  # fmt: skip
        elif weights == "imagenet":
            state, source = resolve_vgg16_features(weights_path)
            net.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) <= last})
            log.info("VGG16 weights: %s", source)
        elif weights == "random":
            msg = "VGG16 has RANDOM weights (loss.vgg.weights=random): losses are not perceptual"
            log.warning(msg)
            warnings.warn(msg, stacklevel=2)
            g = torch.Generator().manual_seed(0)
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, generator=g)
                    nn.init.zeros_(m.bias)
        else:
            raise OptionError(
                f"must be 'imagenet' or 'random', got {weights!r}", option="vgg_weights"
            )
        if pooling == "avg":
            for i, m in enumerate(net):
                if isinstance(m, nn.MaxPool2d):
                    net[i] = nn.AvgPool2d(2, 2)
        elif pooling != "max":
            raise OptionError(f"must be 'max' or 'avg', got {pooling!r}", option="pooling")
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._index = {VGG16_LAYERS[n]: n for n in self.layers}

    def train(self, mode: bool = True) -> VGGFeatures:
        # Always eval: VGG has no dropout/bn in ``features``, but stay explicit.
        return super().train(False)

    def forward(self, x: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Features of every layer this VGG was built for, or only of ``layers`` (and any
        other built layer before the deepest of them): a content target needs relu2_2 alone,
        a third of the work up to relu4_3."""
        last = max(VGG16_LAYERS[n] for n in layers) if layers else len(self.net) - 1
        # In the weights' precision: a VGG stored in bf16 (speed.vgg_dtype) takes fp32 images
        # without autocast too (a CPU run), and its features come out in bf16.
        x = x.to(self.net[0].weight.dtype)
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, Tensor] = {}
        for i, m in enumerate(self.net[: last + 1]):
            h = m(h)
            if i in self._index:
                out[self._index[i]] = h
        return out


def gram_matrix(f: Tensor) -> Tensor:
    """Gram matrix normalised by C*H*W (Johnson et al. 2016, Sec. 3.1), computed in fp32."""
    b, c, h, w = f.shape
    x = f.float().reshape(b, c, h * w)
    return torch.bmm(x, x.transpose(1, 2)) / (c * h * w)


def content_loss(out: Mapping[str, Tensor], target: Mapping[str, Tensor], layers: Sequence[str]):
    """Mean squared feature difference per layer, averaged over layers (Johnson et al. Sec. 3.1)."""
    return sum(F.mse_loss(out[n].float(), target[n].float()) for n in layers) / len(layers)


def style_layer_losses(
    out: Mapping[str, Tensor], target_grams: Mapping[str, Tensor], layers: Sequence[str]
) -> dict[str, Tensor]:
    """Per-layer, per-sample mean squared Gram difference: ``{layer: [B]}``.

    ``target_grams[layer]`` is ``[B, C, C]`` (one target per sample) or ``[1, C, C]``.
    """
    res: dict[str, Tensor] = {}
    for n in layers:
        g = gram_matrix(out[n])
        res[n] = (g - target_grams[n].float()).pow(2).mean(dim=(1, 2))
    return res


def colour_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """RGB mean ``[B, 3]`` and covariance ``[B, 3, 3]`` of each image of ``x`` ([B, 3, H, W] in
    [0, 1]), in fp32: the colour distribution that ``stylenet.inference.palette`` matches after
    the network, here as a loss target."""
    p = x.float().flatten(2)
    mean = p.mean(2)
    d = p - mean[..., None]
    return mean, d @ d.transpose(1, 2) / p.shape[2]


def colour_distance(x: Tensor, target_mean: Tensor, target_cov: Tensor) -> Tensor:
    """Per-sample squared distance ``[B]`` of each image's RGB mean and covariance to its
    target's (``[B, 3]``, ``[B, 3, 3]`` or one target for all)."""
    mean, cov = colour_stats(x)
    return (mean - target_mean.float()).pow(2).mean(1) + (cov - target_cov.float()).pow(2).mean(
        (1, 2)
    )


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic squared TV, mean per pixel (Mahendran & Vedaldi 2015; Johnson et al. Sec. 3.3)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).float().pow(2).mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).float().pow(2).mean()
    return dh + dw


class PerceptualLoss(nn.Module):
    """Content + Gram style + TV loss for a network holding several styles.

    Words: the *loss weights* (``content_weight``, ``style_weight``, ``tv_weight``,
    ``colour_weight``) balance the terms; ``layer_weights`` balance the style layers inside the
    style term; each style's ``loss_scale`` multiplies its own style and colour terms. Style
    targets (Gram matrices, and the painting's RGB mean and covariance for the colour term) are
    registered once with ``set_style_targets`` and gathered per sample by style index, so every
    sample in a batch can train a different style.

    The colour term (``colour_distance``) asks the output for the painting's colour distribution.
    The Gram matrices of the ImageNet-normalised VGG16 leave a feed-forward network much of the
    photo's colour (The Scream comes out pale: README, "Inference"); ``--palette`` fixes that
    after the network, this term teaches it to the row (configs/hardware/cpu.yaml has the
    measurement that chose its weight).
    """

    def __init__(
        self,
        vgg: VGGFeatures,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Mapping[str, float] | None = None,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        colour_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.vgg = vgg
        self.content_layers = validate_layers(content_layers)
        style_layers = dict(style_layers or default_layer_weights())
        self.style_layers = validate_layers(style_layers)
        self.layer_weights = {n: float(style_layers[n]) for n in self.style_layers}
        missing = set(self.content_layers + self.style_layers) - set(vgg.layers)
        if missing:
            raise LayerNameError(f"VGGFeatures was built without layers {sorted(missing)}")
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self.colour_weight = float(colour_weight)
        self.register_buffer("loss_scales", torch.ones(1), persistent=False)
        # The paintings' RGB means and covariances (set_gram_targets), moved with the module.
        self.register_buffer("colour_mean", None, persistent=False)
        self.register_buffer("colour_cov", None, persistent=False)

    @torch.no_grad()
    def style_grams(self, image: Tensor) -> dict[str, Tensor]:
        feats = self.vgg(image)
        return {n: gram_matrix(feats[n]) for n in self.style_layers}

    @torch.no_grad()
    def set_style_targets(
        self, images: Sequence[Tensor], loss_scales: Sequence[float] | None = None
    ) -> None:
        """Compute the Gram targets of each style image once ([1, 3, H, W] each, any size)."""
        grams = [self.style_grams(img) for img in images]
        colours = [colour_stats(img) for img in images]
        self.set_gram_targets(
            {n: torch.cat([g[n] for g in grams], dim=0) for n in self.style_layers},
            loss_scales,
            (torch.cat([m for m, _ in colours]), torch.cat([c for _, c in colours])),
        )

    @torch.no_grad()
    def set_gram_targets(
        self,
        grams: Mapping[str, Tensor],
        loss_scales: Sequence[float] | None = None,
        colours: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """Register precomputed Gram targets ``{layer: [S, C, C]}`` (one row per style) and, for
        the colour term, the paintings' RGB means ``[S, 3]`` and covariances ``[S, 3, 3]``."""
        count = None
        for n in self.style_layers:
            buf = grams[n]
            count = buf.shape[0]
            name = f"gram_{n}"
            if hasattr(self, name):
                delattr(self, name)
            # Not persistent: targets are recomputed from the style images, never checkpointed.
            self.register_buffer(name, buf, persistent=False)
        m = torch.tensor(list(loss_scales) if loss_scales else [1.0] * int(count or 0))
        if m.numel() != count:
            raise ValueError(f"{m.numel()} loss scales for {count} styles")
        if self.colour_weight > 0 and colours is None:
            raise ValueError("the colour term needs the paintings' colours (colour_weight > 0)")
        self.loss_scales = m.to(self.loss_scales.device)
        mean, cov = colours or (None, None)
        self.colour_mean = None if mean is None else mean.to(self.loss_scales.device)
        self.colour_cov = None if cov is None else cov.to(self.loss_scales.device)

    @property
    def num_styles(self) -> int:
        return int(getattr(self, f"gram_{self.style_layers[0]}").shape[0])

    def target_grams(self, style_index: Tensor) -> dict[str, Tensor]:
        return {n: getattr(self, f"gram_{n}")[style_index] for n in self.style_layers}

    def target_colours(self, style_index: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.colour_mean is None:  # set together with colour_cov (set_gram_targets)
            return None
        return self.colour_mean[style_index], self.colour_cov[style_index]

    def combine(
        self,
        out_f: Mapping[str, Tensor],
        content_f: Mapping[str, Tensor],
        target_grams: Mapping[str, Tensor],
        output: Tensor,
        loss_scales: Tensor | None = None,
        target_colours: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """The weighted loss from features already computed: shared by feed-forward training
        (``forward``), per-image optimization (``stylenet.optimization.gatys``) and evaluation.
        The colour term counts when ``colour_weight`` > 0 and the paintings' colours
        (``target_colours``: means and covariances, per sample or one for all) are given."""
        c_loss = content_loss(out_f, content_f, self.content_layers)
        per_layer = style_layer_losses(out_f, target_grams, self.style_layers)
        if loss_scales is None:
            loss_scales = torch.ones(output.shape[0], device=output.device)
        s_layer = {n: (v * loss_scales).mean() for n, v in per_layer.items()}
        s_loss = sum(self.layer_weights[n] * s_layer[n] for n in self.style_layers)
        tv = total_variation(output)
        loss = self.content_weight * c_loss + self.style_weight * s_loss + self.tv_weight * tv
        res = {"loss": loss, "content_loss": c_loss, "style_loss": s_loss, "tv_loss": tv}
        if self.colour_weight > 0 and target_colours is not None:
            col = (colour_distance(output, *target_colours) * loss_scales).mean()
            res["loss"] = loss + self.colour_weight * col
            res["colour_loss"] = col
        for n, v in s_layer.items():
            res[f"style_loss/{n}"] = v
        return res

    def forward(self, output: Tensor, content: Tensor, style_index: Tensor) -> dict[str, Tensor]:
        """Loss terms for ``output`` (network result) vs ``content`` (its input) and per-sample
        style indices. Returns a dict with ``loss`` (weighted total) and each unweighted term."""
        out_f = self.vgg(output)
        with torch.no_grad():
            tgt_f = self.vgg(content, self.content_layers)
        return self.combine(
            out_f,
            tgt_f,
            self.target_grams(style_index),
            output,
            self.loss_scales[style_index],
            self.target_colours(style_index),
        )
