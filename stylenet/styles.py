"""Style images named by the ``style`` config group: one YAML per style, a bank is a list."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from stylenet.data import STYLE_DIR, ImageReadError, image_to_tensor, load_image


class StyleError(ValueError):
    pass


@dataclass(frozen=True)
class StyleSpec:
    name: str
    image: str
    # Per-style multiplier of the style loss (some paintings need more or less push).
    weight: float = 1.0
    # Longer side of the style image when its Gram targets are computed; None: the run's default.
    size: int | None = None

    def path(self) -> Path:
        return resolve_style_image(self.image)


def available_styles() -> list[str]:
    return sorted(p.stem for p in STYLE_DIR.glob("*.jpg"))


def resolve_style_image(image: str | os.PathLike) -> Path:
    """A path as given (absolute or relative to the working directory), else a shipped painting."""
    p = Path(os.path.expanduser(str(image)))
    if p.is_file():
        return p
    for cand in (STYLE_DIR / str(image), STYLE_DIR / f"{image}.jpg"):
        if cand.is_file():
            return cand
    raise StyleError(
        f"style image {str(image)!r} not found (neither a file nor one of the shipped styles: "
        f"{', '.join(available_styles())})"
    )


def specs_from_config(style_cfg: Mapping) -> list[StyleSpec]:
    """``cfg.style`` ({name: {image, weight, size}}) -> ordered specs."""
    if not style_cfg:
        raise StyleError("no style selected: pass style=<name> or style=[a,b]")
    specs = []
    for name, entry in style_cfg.items():
        if not isinstance(entry, Mapping) or "image" not in entry:
            raise StyleError(f"style {name!r} must have an 'image' entry, got {entry!r}")
        size = entry.get("size")
        specs.append(
            StyleSpec(
                name=str(name),
                image=str(entry["image"]),
                weight=float(entry.get("weight", 1.0)),
                size=int(size) if size else None,
            )
        )
    return specs


def load_style_image(spec: StyleSpec, default_size: int) -> Tensor:
    """Style painting as [1, 3, H, W] in [0, 1], longer side resized to the spec's size."""
    try:
        img = load_image(spec.path())
    except ImageReadError as e:
        raise StyleError(f"style {spec.name!r}: {e}") from e
    t = image_to_tensor(img)
    size = spec.size or default_size
    h, w = t.shape[-2:]
    f = size / max(h, w)
    t = TF.resize(t, [max(1, round(h * f)), max(1, round(w * f))], antialias=True)
    return t.unsqueeze(0).clamp(0, 1).to(torch.float32)
