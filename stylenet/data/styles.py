"""Style images named by the ``style`` config group: one YAML per style, a bank is a list."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from stylenet.errors import ImageReadError, StyleError
from stylenet.io.images import image_to_tensor, load_image, resize_long
from stylenet.io.paths import STYLE_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StyleSpec:
    name: str
    image: str
    # Multiplier of this style's style-loss term (some paintings need more or less push).
    loss_scale: float = 1.0
    # Longer side of the style image when its Gram targets are computed; None: the run's default.
    size: int | None = None

    def path(self) -> Path:
        return resolve_style_image(self.image)

    def to_dict(self) -> dict:
        return asdict(self)


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


def spec_from_entry(name: str, entry: Mapping, warn: bool = True) -> StyleSpec:
    """One style's config entry ``{image, loss_scale, size}`` -> ``StyleSpec``.

    ``weight`` is the earlier name of ``loss_scale`` and is still read (with a warning, unless
    the entry comes from an older checkpoint's stored config: ``warn=False``)."""
    if not isinstance(entry, Mapping) or "image" not in entry:
        raise StyleError(f"style {name!r} must have an 'image' entry, got {entry!r}")
    scale = entry.get("loss_scale")
    if "weight" in entry and entry.get("weight") is not None:
        if warn:
            log.warning("style %s: 'weight' is now called 'loss_scale'", name)
        if scale is None:
            scale = entry["weight"]
    scale = 1.0 if scale is None else float(scale)
    if not scale >= 0:
        raise StyleError(f"style {name!r}: loss_scale must be 0 or more, got {scale}")
    size = entry.get("size")
    if size is not None and int(size) < 16:
        raise StyleError(f"style {name!r}: size must be at least 16 px, got {size}")
    return StyleSpec(name=str(name), image=str(entry["image"]), loss_scale=scale,
                     size=int(size) if size else None)  # fmt: skip


def specs_from_config(style_cfg: Mapping) -> list[StyleSpec]:
    """``cfg.style`` ({name: {image, loss_scale, size}}) -> ordered specs."""
    if not style_cfg:
        raise StyleError("no style selected: pass style=<name> or style=[a,b]")
    return [spec_from_entry(str(name), entry) for name, entry in style_cfg.items()]


def load_style_image(spec: StyleSpec, default_size: int) -> Tensor:
    """Style painting as [1, 3, H, W] in [0, 1], longer side resized to the spec's size."""
    try:
        img = load_image(spec.path())
    except ImageReadError as e:
        raise StyleError(f"style {spec.name!r}: {e}") from e
    t = image_to_tensor(img)[None]
    return resize_long(t, spec.size or default_size).clamp(0, 1).to(torch.float32)


def recorded_style_specs(bank: Mapping) -> list[StyleSpec] | None:
    """An exported bank's paintings as ``StyleSpec`` s, in row order, from its recorded training
    config (what a distillation's usual loss and a predictor's row anchors need); None when the
    config does not name every style or a painting cannot be read here."""
    styles = dict((bank.get("train_config") or {}).get("style") or {})
    # Files written before ``loss_scale`` had that name call it ``weight``.
    styles = {
        n: {("loss_scale" if k == "weight" else k): v for k, v in dict(e).items()}
        for n, e in styles.items()
    }
    try:
        specs = {s.name: s for s in specs_from_config(styles)}
        ordered = [specs[n] for n in bank["style_names"]]
        for s in ordered:
            load_style_image(s, 16)
    except (KeyError, StyleError, OSError, ValueError):
        return None
    return ordered
