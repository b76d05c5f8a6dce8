"""Labelled contact sheets: images side by side with a caption under each."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def contact_sheet(
    images: Sequence[Image.Image],
    labels: Sequence[str],
    ncols: int | None = None,
    tile: int = 256,
    pad: int = 6,
    title: str | None = None,
) -> Image.Image:
    """Tiles (each fitted into ``tile`` x ``tile``) in a grid, each with its label below."""
    if len(images) != len(labels):
        raise ValueError("one label per image")
    n = len(images)
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    thumbs = []
    for img in images:
        im = img.convert("RGB").copy()
        im.thumbnail((tile, tile), Image.LANCZOS)
        thumbs.append(im)
    cw = max(t.width for t in thumbs)
    ch = max(t.height for t in thumbs)
    font = _font(14)
    label_h = 22
    title_h = 28 if title else 0
    W = ncols * (cw + pad) + pad
    H = title_h + nrows * (ch + label_h + pad) + pad
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black", font=_font(18))
    for i, (im, lab) in enumerate(zip(thumbs, labels, strict=True)):
        r, c = divmod(i, ncols)
        x0 = pad + c * (cw + pad)
        y0 = title_h + pad + r * (ch + label_h + pad)
        sheet.paste(im, (x0 + (cw - im.width) // 2, y0 + (ch - im.height) // 2))
        text = lab if len(lab) <= 40 else lab[:37] + "..."
        tw = draw.textlength(text, font=font)
        draw.text((x0 + (cw - tw) / 2, y0 + ch + 3), text, fill="black", font=font)
    return sheet
