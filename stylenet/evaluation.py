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
import torch.nn.functional as F
from torch import Tensor

from stylenet.errors import DataError, ImageReadError
from stylenet.files import write_text
from stylenet.imaging import (
    frame_to_tensor,
    image_to_tensor,
    list_images,
    load_image,
    luma,
    resize_long,
)
from stylenet.inference import StylizeOptions, Stylizer
from stylenet.losses import PerceptualLoss, VGGFeatures
from stylenet.model import MIN_SIZE
from stylenet.optimize import optimize_image
from stylenet.paths import cache_dir
from stylenet.vgg import DEFAULT_CONTENT_LAYERS, default_layer_weights

log = logging.getLogger(__name__)

EVAL_CONTENT_LAYERS = DEFAULT_CONTENT_LAYERS
EVAL_STYLE_LAYERS = default_layer_weights()
EVAL_CONTENT_WEIGHT = 1e5
EVAL_STYLE_WEIGHT = 1e10


def build_eval_loss(
    vgg_weights: str = "imagenet", vgg_weights_path: str | None = None
) -> PerceptualLoss:
    vgg = VGGFeatures(
        list(EVAL_CONTENT_LAYERS) + list(EVAL_STYLE_LAYERS), vgg_weights, vgg_weights_path
    )
    return PerceptualLoss(
        vgg, EVAL_CONTENT_LAYERS, EVAL_STYLE_LAYERS, EVAL_CONTENT_WEIGHT, EVAL_STYLE_WEIGHT, 0.0
    )


@torch.no_grad()
def eval_terms(
    loss: PerceptualLoss, output: Tensor, photo: Tensor, style_grams: dict[str, Tensor]
) -> dict[str, float]:
    terms = loss.combine(loss.vgg(output), loss.vgg(photo), style_grams, output)
    return {k: float(v) for k, v in terms.items() if k != "tv_loss"}


def ssim_luma(a: Tensor, b: Tensor) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03) on luma."""
    x, y = luma(a), luma(b)
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).to(x)
    win = (g[:, None] * g[None, :])[None, None]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def periodic_energy(x: Tensor, period: int) -> float:
    """Fraction of the luma's (mean-removed) spectral energy on the lines of frequency 1/period
    in either axis: checkerboard and grid artifacts of stride-2 layers show up there."""
    y = luma(x)[0, 0]
    y = y - y.mean()
    h, w = y.shape
    p = torch.fft.fft2(y).abs() ** 2
    total = p.sum().clamp_min(1e-12)
    rows = {round(k * h / period) % h for k in range(1, period)}
    cols = {round(k * w / period) % w for k in range(1, period)}
    mask = torch.zeros_like(p, dtype=torch.bool)
    for r in rows:
        mask[r, :] = True
    for c in cols:
        mask[:, c] = True
    return float(p[mask].sum() / total)


def checkerboard_score(output: Tensor, photo: Tensor, period: int = 2) -> float:
    return periodic_energy(output, period) / max(periodic_energy(photo, period), 1e-12)


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

    from stylenet.styles import resolve_style_image

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
    "yes" when every one is in its ``data.exclude`` list, otherwise "not recorded" (a network
    trained before that key existed, or on a folder that held them)."""
    from stylenet.checkpoint import read_checkpoint

    data = (read_checkpoint(checkpoint).get("train_config") or {}).get("data") or {}
    excluded = data.get("exclude") or []
    if isinstance(excluded, str):
        try:
            excluded = Path(excluded).read_text().splitlines()
        except OSError:
            excluded = []
    stems = {Path(str(e).split("#", 1)[0].strip()).stem for e in excluded}
    return "yes" if photo_stems and all(p in stems for p in photo_stems) else "not recorded"


def _machine() -> str:
    from stylenet.bench.timing import environment

    env = environment()
    return f"{env['cpu']}, {env['cpu_threads']} threads" + (
        f", {env['cuda']}" if env["cuda"] else ""
    )


def _trained_style_images(checkpoint: str | Path) -> dict[str, str]:
    """{style name: painting it was trained on}, from the checkpoint's training config (styles
    not listed there fall back to the shipped painting of that name)."""
    from stylenet.checkpoint import read_checkpoint

    styles = (read_checkpoint(checkpoint).get("train_config") or {}).get("style", {})
    return {n: str(e["image"]) for n, e in styles.items() if isinstance(e, dict) and e.get("image")}


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def flicker_figures(frames: list[Tensor], outputs: list[Tensor]) -> dict[str, float]:
    """Flicker ratio: mean absolute frame-to-frame change of the stylized clip over the input
    clip's (1.0: the output changes no more than the input; meaningful for a still camera), and
    the motion-compensated temporal error (``stylenet.temporal.temporal_error``, for pans)."""
    from stylenet.temporal import temporal_error

    if len(frames) < 2:
        raise DataError("a clip needs at least two frames")

    def mean_change(clip: list[Tensor]) -> float:
        return sum(
            float((a - b).abs().mean()) for a, b in zip(clip[1:], clip[:-1], strict=True)
        ) / (len(clip) - 1)

    dx, dy = mean_change(frames), mean_change(outputs)
    return {"frames": len(frames), "input_change": dx, "output_change": dy,
            "flicker_ratio": dy / max(dx, 1e-12),
            "temporal_error": temporal_error(frames, outputs)}  # fmt: skip


def stylize_clip(
    st: Stylizer, frames: list[Tensor], style: str, temporal: float = 0.0
) -> list[Tensor]:
    from stylenet.temporal import TemporalSmoother

    smoother = TemporalSmoother(temporal) if temporal else None
    out = []
    for x in frames:
        y = st.stylize_tensor(x, StylizeOptions(style=style, max_size=0))
        out.append(smoother(x, y) if smoother else y)
    return out


def read_clip(path: Path, size: int, max_frames: int = 30) -> list[Tensor]:
    from stylenet.video import read_frames

    frames = []
    for i, frame in enumerate(read_frames(path)):
        if i >= max_frames:
            break
        x = frame_to_tensor(frame)
        frames.append(resize_long(x, min(size, max(x.shape[-2:]))).clamp(0, 1))
    return frames


def video_flicker(
    st: Stylizer, path: Path, style: str, size: int, max_frames: int = 30, temporal: float = 0.0
) -> dict[str, float]:
    """Flicker figures of the first ``max_frames`` frames of a clip at ``size`` px."""
    frames = read_clip(path, size, max_frames)
    res = flicker_figures(frames, stylize_clip(st, frames, style, temporal))
    res["temporal"] = temporal
    return res


# Photo rows of the contact sheet: enough to look at each style on different scenes; the tables
# score every photo. 24 rows of 11 tiles at 192 px made a 13 MB PNG.
SHEET_PHOTOS = 6


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from stylenet.files import save_image, write_text
    from stylenet.imaging import tensor_to_image
    from stylenet.sheets import contact_sheet

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = report.pop("_outputs")
    photos = report.pop("_photos")
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "sheet": out_dir / "contact_sheet.png",
    }
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    names = list(report["styles"])
    imgs, labels = [], []
    for i, (pname, photo) in enumerate(photos[:SHEET_PHOTOS]):
        imgs.append(tensor_to_image(photo))
        labels.append(pname)
        for n in names:
            imgs.append(tensor_to_image(outputs[n][i]))
            labels.append(n)
    sheet = contact_sheet(imgs, labels, ncols=len(names) + 1, tile=192)
    save_image(sheet, paths["sheet"])
    write_text(paths["markdown"], render_report_md(report))
    return paths


def render_report_md(report: dict[str, Any]) -> str:
    el = report["eval_loss"]
    held = report.get("held_out", "not recorded")
    which = "held-out photos" if held == "yes" else "photos"
    lines = [
        f"# Quality report: `{report['checkpoint']}`",
        "",
    ]
    if report.get("note"):
        lines += [report["note"].strip(), ""]
    if held != "yes":
        lines += ["These photos are not recorded as held out from this network's training (its "
                  "training config excludes none of them).", ""]  # fmt: skip
    if report.get("wall_s") is not None:
        lines += [f"Evaluated in {report['wall_s']:.0f} s on {report.get('machine', '?')}.", ""]
    lines += [
        f"{len(report['photos'])} {which} at {report['size']} px (longer side). Fixed evaluation "
        f"loss: VGG16, content {', '.join(el['content_layers'])}, style {', '.join(el['style_layers'])}, "
        f"total = {el['content_weight']:g} x content + {el['style_weight']:g} x style. Lower is better for "
        "losses; SSIM (luma, 1 = same structure) higher keeps more of the photo; checkerboard 1.0 = no more "
        "periodic energy than the photo; amortization gap = feed-forward loss / optimized loss (1.0 = as "
        "good as per-image optimization).",
        "",
        "| style | loss | content | style | relu1_2 | relu2_2 | relu3_3 | relu4_3 | SSIM luma | checker 2px | checker 4px | amortization gap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in report["styles"].items():
        m = s["summary"]
        gap = f"{m['amortization_gap']:.2f}" if "amortization_gap" in m else "n/a"
        lines.append(
            f"| {n} | {m['loss']:.4g} | {m['content_loss']:.4g} | {m['style_loss']:.3g} | "
            + " | ".join(
                f"{m[f'style_loss/{k}']:.3g}" for k in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
            )
            + f" | {m['ssim_luma']:.3f} | {m['checkerboard_2px']:.2f} | {m['checkerboard_4px']:.2f} | {gap} |"
        )
    gaps = [(n, g) for n, s in report["styles"].items() for g in s["amortization"]]
    if gaps:
        lines += ["", "Amortization gap per photo (L-BFGS from the photo, same loss, same size):", "",
                  "| style | photo | feed-forward loss | optimized loss | ratio | steps |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for n, g in gaps:
            lines.append(
                f"| {n} | {g['photo']} | {g['feed_forward_loss']:.4g} | {g['optimized_loss']:.4g} | {g['ratio']:.2f} | {g['steps']} |"
            )
    cmp_rows = [
        (n, s["summary"]) for n, s in report["styles"].items() if "compare_loss" in s["summary"]
    ]
    if cmp_rows:
        lines += ["", "Bank vs single-style checkpoint (same style, same photos):", "",
                  "| style | this checkpoint loss | compared checkpoint loss | this style | compared style | this content | compared content |",
                  "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for n, m in cmp_rows:
            lines.append(f"| {n} | {m['loss']:.4g} | {m['compare_loss']:.4g} | {m['style_loss']:.3g} | "
                         f"{m['compare_style_loss']:.3g} | {m['content_loss']:.4g} | {m['compare_content_loss']:.4g} |")  # fmt: skip
    if "video_flicker" in report:
        v = report["video_flicker"]
        lines += ["", f"Video flicker ({v['frames']} frames): output change {v['output_change']:.4f} vs input "
                  f"change {v['input_change']:.4f} per frame; ratio {v['flicker_ratio']:.2f}."]  # fmt: skip
        t = report.get("video_flicker_temporal")
        if t:
            lines.append(f"With temporal smoothing {t['temporal']:g}: output change "
                         f"{t['output_change']:.4f}; ratio {t['flicker_ratio']:.2f}.")  # fmt: skip
    shown = min(SHEET_PHOTOS, len(report["photos"]))
    lines += ["", f"Contact sheet: {shown} of the {len(report['photos'])} photos.", "",
              "![contact sheet](contact_sheet.png)", ""]  # fmt: skip
    return "\n".join(lines)


def still_camera_clip(
    background: Tensor,
    subject: Tensor,
    frames: int = 30,
    step: int = 4,
    noise: float = 2.0 / 255,
    seed: int = 0,
) -> list[Tensor]:
    """A clip from two photos: a still background, a subject (a disc cut from the second photo)
    crossing it ``step`` px per frame, and sensor noise of ``noise`` (std) on every frame: what a
    tripod camera sees. ``background`` [1, 3, H, W], ``subject`` [1, 3, h, w] (h, w < H, W)."""
    g = torch.Generator().manual_seed(seed)
    _, _, H, W = background.shape
    r = min(subject.shape[-2:]) // 2
    yy, xx = torch.meshgrid(torch.arange(2 * r), torch.arange(2 * r), indexing="ij")
    disc = (((yy - r + 0.5) ** 2 + (xx - r + 0.5) ** 2) < r * r).float()[None, None]
    patch = subject[..., : 2 * r, : 2 * r]
    top = (H - 2 * r) // 2
    out = []
    for i in range(frames):
        left = (i * step) % max(1, W - 2 * r)
        f = background.clone()
        region = f[..., top : top + 2 * r, left : left + 2 * r]
        f[..., top : top + 2 * r, left : left + 2 * r] = disc * patch + (1 - disc) * region
        out.append((f + noise * torch.randn(f.shape, generator=g)).clamp(0, 1))
    return out


def pan_clip(
    photo: Tensor, frames: int = 30, step: int = 3, size: tuple[int, int] = (192, 256)
) -> list[Tensor]:
    """A camera pan across a still photo, ``step`` px per frame (no noise)."""
    h, w = size
    return [photo[..., :h, i * step : i * step + w].contiguous() for i in range(frames)]
