"""Quality evaluation of trained checkpoints on held-out photos.

Every number here uses one **fixed evaluation loss**, independent of how a model was trained:
torchvision's ImageNet VGG16, content at relu2_2, style at relu1_2, relu2_2, relu3_3, relu4_3
(equal weights), Gram / (C*H*W), mean-squared errors, and the total
``1e5 * content + 1e10 * style`` (the pytorch/examples fast_neural_style weights). The style
painting is seen at the evaluation size (its longer side = ``size``).

Reported per style: content loss, style loss (total and per layer), SSIM of the luminance of
output vs photo (structure kept), a checkerboard score (spectral energy at the 2- and 4-pixel
periods relative to the photo's: 1.0 means no more than the photo has), the amortization gap
(feed-forward loss / the loss that per-image optimization reaches on the same photo and style),
and optionally video flicker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stylenet.errors import DataError, ImageReadError
from stylenet.evaluation.flicker import video_flicker
from stylenet.evaluation.loss import (
    EVAL_CONTENT_LAYERS,
    EVAL_CONTENT_WEIGHT,
    EVAL_STYLE_LAYERS,
    EVAL_STYLE_WEIGHT,
    build_eval_loss,
    eval_terms,
)
from stylenet.evaluation.measures import checkerboard_score, ssim_luma
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.io.files import write_text
from stylenet.io.images import (
    image_to_tensor,
    list_images,
    load_image,
    resize_long,
)
from stylenet.io.paths import cache_dir
from stylenet.losses.perceptual import PerceptualLoss
from stylenet.nn.network import MIN_SIZE
from stylenet.optimization.gatys import optimize_image

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """What is measured. The default (``quick``) finishes on 2 CPU cores in about 4 minutes for
    a 10-style bank, references included (229 s on 2 AVX2 cores: ``wall_s`` of
    bench/quality/bank_all-quick/report.json): 4 photos at 256 px, and a 40-step L-BFGS
    reference on 1 photo per style. Its gap is against a short reference, so it is a
    lower bound of the ``full`` protocol's (512 px, every photo, 500-step references on 2 photos
    per style: hours on a CPU, minutes on a GPU). References are cached, so only the first run
    of a (photo, style, size, steps) pays for them."""

    size: int = 256
    gap_photos: int = 1
    gap_steps: int = 40
    max_photos: int = 4
    vgg_weights: str = "imagenet"
    vgg_weights_path: str | None = None
    device: str = "auto"
    cache: bool = True
    progress: bool = True

    @classmethod
    def protocol(cls, name: str, **overrides: Any) -> EvalConfig:
        presets = {
            "quick": {},
            "full": {"size": 512, "gap_photos": 2, "gap_steps": 500, "max_photos": 0},
        }
        if name not in presets:
            raise DataError(f"unknown protocol {name!r}; use quick or full", option="protocol")
        return cls(**{**presets[name], **{k: v for k, v in overrides.items() if v is not None}})


def load_photos(
    content_dir: Path, size: int, max_photos: int = 0, names: Sequence[str] | None = None
) -> list[tuple[str, Tensor]]:
    """The photos of ``content_dir`` (only those named in ``names``, when given: file names or
    paths relative to the folder), at ``size`` px on their longer side."""
    files = list_images(content_dir)
    if names is not None:
        wanted = set(names)
        files = [
            f for f in files if f.name in wanted or f.relative_to(content_dir).as_posix() in wanted
        ]
        found = {f.name for f in files} | {f.relative_to(content_dir).as_posix() for f in files}
        missing = sorted(wanted - found)
        if missing:
            raise DataError(
                f"{len(missing)} listed photo(s) are not under {content_dir}, e.g. {missing[0]}",
                option="photos",
            )
    if max_photos:
        files = files[:max_photos]
    out = []
    for f in files:
        try:
            t = image_to_tensor(load_image(f))[None]
        except ImageReadError as e:  # a bad photo is reported and skipped
            log.warning("skipping %s: %s", f, e)
            continue
        t = resize_long(t, size).clamp(0, 1)
        if min(t.shape[-2:]) < MIN_SIZE:  # a strip: nothing the network can stylize
            log.warning(
                "skipping %s: %dx%d at %d px is thinner than the network's minimum of %d px",
                f, t.shape[-1], t.shape[-2], size, MIN_SIZE,
            )  # fmt: skip
            continue
        out.append((f.stem, t))
    if not out:
        raise DataError(f"no readable photos under {content_dir}")
    return out


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:24]


def reference_loss(
    loss: PerceptualLoss,
    photo: Tensor,
    style_img: Tensor,
    grams: dict[str, Tensor],
    steps: int,
    device: torch.device,
    cfg: EvalConfig,
) -> dict[str, float]:
    """The evaluation loss that ``steps`` of L-BFGS from the photo reach (cached per photo,
    painting, size, steps and loss definition)."""
    key = hashlib.sha256(
        json.dumps(
            [
                _digest(photo),
                _digest(style_img),
                steps,
                list(EVAL_CONTENT_LAYERS),
                EVAL_STYLE_LAYERS,
                EVAL_CONTENT_WEIGHT,
                EVAL_STYLE_WEIGHT,
                cfg.vgg_weights,
                cfg.vgg_weights_path,
            ]
        ).encode()  # fmt: skip
    ).hexdigest()[:32]
    path = cache_dir() / "eval_refs" / f"{key}.json"
    if cfg.cache:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    res = optimize_image(
        photo.to(device), [style_img], vgg=loss.vgg, content_layers=EVAL_CONTENT_LAYERS,
        style_layers=EVAL_STYLE_LAYERS, content_weight=EVAL_CONTENT_WEIGHT,
        style_weight=EVAL_STYLE_WEIGHT, steps=steps, init="content", device=device,
    )  # fmt: skip
    terms = eval_terms(loss, res.image.to(device), photo.to(device), grams)
    terms["steps"] = res.steps
    if cfg.cache and cfg.vgg_weights != "random":
        write_text(path, json.dumps(terms))
    return terms


def evaluate_checkpoint(
    checkpoint: str | Path,
    content_dir: str | Path,
    styles: Sequence[str] | None = None,
    cfg: EvalConfig | None = None,
    compare_checkpoint: str | Path | None = None,
    video: str | Path | None = None,
    loss: PerceptualLoss | None = None,
    temporal: float = 0.0,
    photo_names: Sequence[str] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Score ``checkpoint`` on the photos of ``content_dir`` (or only ``photo_names`` of them).
    ``note`` is stored with the report, e.g. what the network was trained on."""
    from tqdm import tqdm

    from stylenet.data.styles import resolve_style_image

    t_start = time.time()
    cfg = cfg or EvalConfig()
    st = Stylizer(checkpoint, device=cfg.device, precision="fp32", compile="off")
    names = list(styles) if styles else st.style_names
    for n in names:
        st.mix(n)  # unknown names: error listing the valid ones
    loss = loss or build_eval_loss(cfg.vgg_weights, cfg.vgg_weights_path)
    loss = loss.to(st.device)
    photos = load_photos(Path(content_dir), cfg.size, cfg.max_photos, photo_names)
    other = (
        Stylizer(compare_checkpoint, device=cfg.device, precision="fp32", compile="off")
        if compare_checkpoint
        else None
    )

    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "compare": str(compare_checkpoint) if compare_checkpoint else None,
        "size": cfg.size,
        "photos": [p for p, _ in photos],
        "held_out": held_out_status(checkpoint, [p for p, _ in photos]),
        "note": note,
        "protocol": {
            "size": cfg.size,
            "photos": len(photos),
            "gap_photos": min(cfg.gap_photos, len(photos)),
            "gap_steps": cfg.gap_steps,
        },  # fmt: skip
        "eval_loss": {
            "vgg": "torchvision VGG16 IMAGENET1K_V1",
            "content_layers": list(EVAL_CONTENT_LAYERS),
            "style_layers": EVAL_STYLE_LAYERS,
            "content_weight": EVAL_CONTENT_WEIGHT,
            "style_weight": EVAL_STYLE_WEIGHT,
        },
        "styles": {},
    }
    trained_styles = _trained_style_images(checkpoint)
    outputs: dict[str, list[Tensor]] = {}
    n_gap = min(cfg.gap_photos, len(photos))
    # One unit per stylized photo, and gap_steps units per reference optimization: the ETA
    # weighs them by the work they are.
    bar = tqdm(total=len(names) * (len(photos) + n_gap * cfg.gap_steps // 10), desc="evaluate",
               unit="unit", disable=not cfg.progress, leave=False)  # fmt: skip
    for name in names:
        bar.set_postfix_str(name)
        style_img = image_to_tensor(
            load_image(resolve_style_image(trained_styles.get(name, name)))
        )[None]
        style_img = resize_long(style_img, cfg.size).clamp(0, 1).to(st.device)
        grams = loss.style_grams(style_img)
        rows = []
        outs = []
        for pname, photo in photos:
            y = st.stylize_tensor(photo, StylizeOptions(style=name, max_size=0))
            outs.append(y)
            yd, pd = y.to(st.device), photo.to(st.device)
            t = eval_terms(loss, yd, pd, grams)
            t.update(
                photo=pname,
                ssim_luma=ssim_luma(y, photo),
                checkerboard_2px=checkerboard_score(y, photo, 2),
                checkerboard_4px=checkerboard_score(y, photo, 4),
            )
            if other is not None and name in other.style_names:
                y2 = other.stylize_tensor(photo, StylizeOptions(style=name, max_size=0))
                t2 = eval_terms(loss, y2.to(st.device), pd, grams)
                t["compare_loss"] = t2["loss"]
                t["compare_style_loss"] = t2["style_loss"]
                t["compare_content_loss"] = t2["content_loss"]
                t["compare_checkerboard_2px"] = checkerboard_score(y2, photo, 2)
            rows.append(t)
            bar.update(1)
        gaps = []
        for pname, photo in photos[:n_gap]:
            ff = next(r for r in rows if r["photo"] == pname)
            ref = reference_loss(loss, photo, style_img, grams, cfg.gap_steps, st.device, cfg)
            gaps.append({"photo": pname, "feed_forward_loss": ff["loss"], "optimized_loss": ref["loss"],
                         "ratio": ff["loss"] / max(ref["loss"], 1e-12), "steps": ref["steps"]})  # fmt: skip
            bar.update(cfg.gap_steps // 10)
        summary = _mean_rows(rows)
        if gaps:
            summary["amortization_gap"] = statistics.median(g["ratio"] for g in gaps)
        report["styles"][name] = {"summary": summary, "per_photo": rows, "amortization": gaps}
        outputs[name] = outs
    bar.close()
    if video:
        report["video_flicker"] = video_flicker(st, Path(video), names[0], cfg.size)
        if temporal:
            report["video_flicker_temporal"] = video_flicker(
                st, Path(video), names[0], cfg.size, temporal=temporal
            )
    report["wall_s"] = round(time.time() - t_start, 1)
    report["machine"] = _machine()
    report["_outputs"] = outputs
    report["_photos"] = photos
    return report


def held_out_status(checkpoint: str | Path, photo_stems: Sequence[str]) -> str:
    """Whether the checkpoint's training config shows these photos were kept out of training:
    "yes" when every one is in its ``data.exclude`` list; "list not here: <path>" when that list
    is a file this machine cannot read (a shipped file's paths are replaced by placeholders);
    otherwise "not recorded" (a network trained before that key existed, or on a folder that
    held them)."""
    from stylenet.checkpoints.format import read_checkpoint
    from stylenet.evaluation.report import LIST_NOT_HERE

    data = (read_checkpoint(checkpoint).get("train_config") or {}).get("data") or {}
    excluded = data.get("exclude") or []
    if isinstance(excluded, str):
        try:
            excluded = Path(excluded).read_text().splitlines()
        except OSError:
            return f"{LIST_NOT_HERE}{data['exclude']}"
    stems = {Path(str(e).split("#", 1)[0].strip()).stem for e in excluded}
    return "yes" if photo_stems and all(p in stems for p in photo_stems) else "not recorded"


def _machine() -> str:
    from stylenet.runtime.machine import environment

    env = environment()
    return f"{env['cpu']}, {env['cpu_threads']} threads" + (
        f", {env['cuda']}" if env["cuda"] else ""
    )


def _trained_style_images(checkpoint: str | Path) -> dict[str, str]:
    """{style name: painting it was trained on}, from the checkpoint's training config (styles
    not listed there fall back to the shipped painting of that name)."""
    from stylenet.checkpoints.format import read_checkpoint

    styles = (read_checkpoint(checkpoint).get("train_config") or {}).get("style", {})
    return {n: str(e["image"]) for n, e in styles.items() if isinstance(e, dict) and e.get("image")}


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
