"""Perceptual losses on frozen VGG16 features: content, Gram style, total variation.

One implementation serves the feed-forward training (``PerceptualLoss``), the per-image
optimization method (``stylenet.optimize``) and the evaluation harness.
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

from stylenet.weights import resolve_vgg16_features

log = logging.getLogger(__name__)

# ImageNet statistics the torchvision VGG16 was trained with; applied inside ``VGGFeatures`` so
# callers always pass images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Index of each ReLU in torchvision's ``vgg16().features``.
VGG16_LAYERS: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}  # fmt: skip
# VGG19 names (Gatys et al. use VGG19) that VGG16 lacks: VGG19 has a 4th conv in blocks 3-5.
VGG19_ONLY = ("relu3_4", "relu4_4", "relu5_4")


class LayerNameError(ValueError):
    pass


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

    ``weights``: "imagenet" (resolved by ``stylenet.weights``; an error if not found) or "random"
    (tests only; logged as a warning). ``pooling``: "max" (torchvision) or "avg" (Gatys et al.
    2016, Sec. 2, report slightly better results with average pooling for optimization).
    """

    def __init__(
        self,
        layers: Iterable[str],
        weights: str = "imagenet",
        weights_path: str | None = None,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        self.layers = sorted(set(validate_layers(layers)), key=VGG16_LAYERS.__getitem__)
        if not self.layers:
            raise LayerNameError("VGGFeatures needs at least one layer")
        last = VGG16_LAYERS[self.layers[-1]]
        net = vgg16(weights=None).features[: last + 1]
        if weights == "imagenet":
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
            raise ValueError(f"loss.vgg.weights must be 'imagenet' or 'random', got {weights!r}")
        if pooling == "avg":
            for i, m in enumerate(net):
                if isinstance(m, nn.MaxPool2d):
                    net[i] = nn.AvgPool2d(2, 2)
        elif pooling != "max":
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
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

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, Tensor] = {}
        for i, m in enumerate(self.net):
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


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic squared TV, mean per pixel (Mahendran & Vedaldi 2015; Johnson et al. Sec. 3.3)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).float().pow(2).mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).float().pow(2).mean()
    return dh + dw


class PerceptualLoss(nn.Module):
    """Content + weighted Gram style + TV loss for a network holding several styles.

    Style targets are registered once with ``set_style_targets`` and gathered per sample by style
    index, so every sample in a batch can train a different style.
    """

    def __init__(
        self,
        vgg: VGGFeatures,
        content_layers: Sequence[str] = ("relu2_2",),
        style_layers: Mapping[str, float] | None = None,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.vgg = vgg
        self.content_layers = validate_layers(content_layers)
        style_layers = dict(
            style_layers or {n: 1.0 for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
        )
        self.style_layers = validate_layers(style_layers)
        self.style_layer_weights = {n: float(style_layers[n]) for n in self.style_layers}
        missing = set(self.content_layers + self.style_layers) - set(vgg.layers)
        if missing:
            raise LayerNameError(f"VGGFeatures was built without layers {sorted(missing)}")
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self._grams: dict[str, Tensor] = {}
        self.register_buffer("style_multipliers", torch.ones(1), persistent=False)

    @torch.no_grad()
    def style_grams(self, image: Tensor) -> dict[str, Tensor]:
        feats = self.vgg(image)
        return {n: gram_matrix(feats[n]) for n in self.style_layers}

    @torch.no_grad()
    def set_style_targets(
        self, images: Sequence[Tensor], multipliers: Sequence[float] | None = None
    ) -> None:
        """Compute the Gram targets of each style image once ([1, 3, H, W] each, any size)."""
        grams = [self.style_grams(img) for img in images]
        for n in self.style_layers:
            buf = torch.cat([g[n] for g in grams], dim=0)
            name = f"gram_{n}"
            if hasattr(self, name):
                delattr(self, name)
            # Not persistent: targets are recomputed from the style images, never checkpointed.
            self.register_buffer(name, buf, persistent=False)
        m = torch.tensor(list(multipliers) if multipliers else [1.0] * len(images))
        if m.numel() != len(images):
            raise ValueError("one multiplier per style image expected")
        self.style_multipliers = m.to(self.style_multipliers.device)

    def target_grams(self, style_index: Tensor) -> dict[str, Tensor]:
        return {n: getattr(self, f"gram_{n}")[style_index] for n in self.style_layers}

    def combine(
        self,
        out_f: Mapping[str, Tensor],
        content_f: Mapping[str, Tensor],
        target_grams: Mapping[str, Tensor],
        output: Tensor,
        multipliers: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The weighted loss from features already computed: shared by feed-forward training
        (``forward``) and per-image optimization (``stylenet.optimize``)."""
        c_loss = content_loss(out_f, content_f, self.content_layers)
        per_layer = style_layer_losses(out_f, target_grams, self.style_layers)
        if multipliers is None:
            multipliers = torch.ones(output.shape[0], device=output.device)
        s_layer = {n: (v * multipliers).mean() for n, v in per_layer.items()}
        s_loss = sum(self.style_layer_weights[n] * s_layer[n] for n in self.style_layers)
        tv = total_variation(output)
        loss = self.content_weight * c_loss + self.style_weight * s_loss + self.tv_weight * tv
        res = {"loss": loss, "content_loss": c_loss, "style_loss": s_loss, "tv_loss": tv}
        for n, v in s_layer.items():
            res[f"style_loss/{n}"] = v
        return res

    def forward(self, output: Tensor, content: Tensor, style_index: Tensor) -> dict[str, Tensor]:
        """Loss terms for ``output`` (network result) vs ``content`` (its input) and per-sample
        style indices. Returns a dict with ``loss`` (weighted total) and each unweighted term."""
        out_f = self.vgg(output)
        with torch.no_grad():
            tgt_f = self.vgg(content)
        return self.combine(
            out_f,
            tgt_f,
            self.target_grams(style_index),
            output,
            self.style_multipliers[style_index],
        )
