"""One per-image optimization run from a Hydra config (``stylenet-optimize``), and the contact
sheet written after a ``--multirun`` sweep."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig
from omegaconf.errors import OmegaConfBaseException

from stylenet.data.styles import resolve_style_image
from stylenet.errors import ImageReadError, OptimizeError, OutputError, StyleError
from stylenet.io.files import check_output, check_writable_dir, same_file, save_image, write_text
from stylenet.io.images import image_to_tensor, load_image, resize_long, tensor_to_image
from stylenet.losses.perceptual import expand_layer_spec
from stylenet.optimization.gatys import optimize_image

log = logging.getLogger("stylenet.optimize")


def _run_dir(default: str = "outputs/optimize/run") -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, OmegaConfBaseException):  # outside a Hydra app, or composed without a run
        return Path(default)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, (list, tuple, ListConfig)):
        return list(v)
    return [v]


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    run_dir = run_dir or _run_dir()
    check_writable_dir(run_dir)
    if cfg.content in (None, "???"):
        raise OptimizeError("content=<photo> is required")
    dst = Path(cfg.output) if cfg.get("output") else None
    if dst is not None:  # checked before the optimization, not after it
        check_output(None, dst, bool(cfg.get("overwrite", False)))
    content = image_to_tensor(load_image(cfg.content))[None]
    if cfg.size:
        content = resize_long(content, int(cfg.size)).clamp(0, 1)
    style_paths = [resolve_style_image(s) for s in _as_list(cfg.style)]
    if not style_paths:
        raise StyleError("style=<name or image> is required")
    if dst is not None and any(same_file(dst, p) for p in [Path(cfg.content), *style_paths]):
        raise OutputError(f"output {dst} is an input image; refusing to overwrite it")
    styles = []
    for p in style_paths:
        try:
            s = image_to_tensor(load_image(p))[None]
        except ImageReadError as e:
            raise StyleError(str(e)) from e
        # Style image at the output's size (longer side), so brush strokes keep their scale.
        styles.append(resize_long(s, max(content.shape[-2:])).clamp(0, 1))
    style_layers = expand_layer_spec(cfg.style_layers)
    if cfg.style_layer_weights:
        sw = {str(k): float(v) for k, v in cfg.style_layer_weights.items()}
        expand_layer_spec(list(sw))
        style_layers = sw
    content_layers = expand_layer_spec(_as_list(cfg.content_layers))

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    snap_dir = run_dir / "snapshots"
    snap_dir.mkdir(exist_ok=True)
    every = int(cfg.snapshot_every or 0)

    def on_step(step: int, img, losses: dict[str, float]) -> None:  # noqa: ANN001
        for k, v in losses.items():
            writer.add_scalar(f"optimize/{k}", v, step)
        if every and step % every == 0:
            save_image(tensor_to_image(img), snap_dir / f"step{step:05d}.png")
            writer.add_image("optimize/snapshot", img[0].clamp(0, 1).cpu(), step)

    lc = cfg.loss
    res = optimize_image(
        content, styles, _as_list(cfg.style_blend) or None,
        content_layers=content_layers, style_layers=style_layers,
        content_weight=lc.content_weight, style_weight=lc.style_weight, tv_weight=lc.tv_weight,
        optimizer=cfg.optimizer, steps=int(cfg.steps), lr=cfg.lr, init=cfg.init,
        preserve_colors=bool(cfg.preserve_color), scales=_as_list(cfg.scales) or None,
        device=cfg.device, vgg_weights=lc.vgg.weights, vgg_weights_path=lc.vgg.weights_path,
        pooling=lc.vgg.pooling, seed=int(cfg.seed), callback=on_step, progress=True,
    )  # fmt: skip
    writer.close()
    out = run_dir / "result.png"
    img = tensor_to_image(res.image)
    save_image(img, out)
    if dst is not None:
        save_image(img, dst)
    summary = {"result": str(out), "steps": res.steps, "losses": res.losses,
               "style_layers": list(style_layers), "content_layers": content_layers}  # fmt: skip
    write_text(run_dir / "losses.json", json.dumps(summary, indent=2) + "\n")
    return summary


class ContactSheetCallback(Callback):
    """After a ``--multirun`` sweep: one labelled sheet with every variant side by side."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        write_sweep_sheet(sweep)


def write_sweep_sheet(sweep: Path) -> Path | None:
    from PIL import Image

    from stylenet.io.sheets import contact_sheet

    jobs = sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    found = []
    for j in jobs:
        res = j / "result.png"
        ov = j / ".hydra" / "overrides.yaml"
        if res.is_file():
            overrides = yaml.safe_load(ov.read_text()) if ov.is_file() else []
            found.append((j, res, overrides or []))
    if not found:
        return None
    common = (
        set(found[0][2]).intersection(*[set(f[2]) for f in found[1:]]) if len(found) > 1 else set()
    )
    labels = [", ".join(o for o in f[2] if o not in common) or f[0].name for f in found]
    images = [Image.open(f[1]) for f in found]
    title = ", ".join(sorted(common)) if common else None
    sheet = contact_sheet(images, labels, ncols=min(len(images), 5), title=title)
    out = sweep / "contact_sheet.png"
    save_image(sheet, out)
    print(f"contact sheet: {out}")
    return out
