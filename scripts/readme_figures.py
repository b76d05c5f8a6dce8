"""The README's figures, made from what ships, and the project's own demonstration painting.

    python scripts/readme_figures.py --help

A developer tool: it is not part of the installed package. ``mosaic_painting`` draws the
painting used to show how a bank grows (a Voronoi mosaic with dark grout, in the colours of
stained glass). It is this project's own work, generated from a seed, so it ships under the
project's licence like the code that makes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

# JPEG quality of the figures (4:4:4 chroma, as every image the package writes): the seven
# figures took 5.2 MB as PNG and take 1.5 MB at 88, with no difference visible side by side.
FIGURE_QUALITY = 88

# Stained-glass colours (RGB): deep blue, cobalt, ruby, amber, emerald, violet, gold, teal.
PALETTE = [(28, 48, 120), (46, 92, 170), (160, 30, 42), (214, 140, 40), (30, 120, 70),
           (96, 50, 130), (220, 190, 70), (30, 130, 140)]  # fmt: skip


def save_figure(img: Image.Image, output: str) -> Path:
    from stylenet.io.files import save_image

    return save_image(img, Path(output), quality=FIGURE_QUALITY)


def mosaic_painting(size: int = 512, cells: int = 140, seed: int = 7) -> Image.Image:
    """A Voronoi mosaic: flat cells of palette colours with light shading, dark grout lines, a
    little canvas grain. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, size, (cells, 2))
    colours = np.array(PALETTE, np.float32)[rng.integers(0, len(PALETTE), cells)]
    colours *= rng.uniform(0.8, 1.15, (cells, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (yy[..., None] - pts[:, 1]) ** 2 + (xx[..., None] - pts[:, 0]) ** 2  # [H, W, cells]
    order = np.argsort(d, axis=-1)[..., :2]
    first = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    second = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    img = colours[order[..., 0]]
    # shading: brighter towards each cell's centre
    img *= (1.05 - 0.25 * np.sqrt(first) / (np.sqrt(second) + 1e-3))[..., None]
    grout = (np.sqrt(second) - np.sqrt(first)) < 2.2
    img[grout] = (22, 20, 18)
    img += rng.normal(0, 6, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))


def hero(checkpoint: str, photo: str, a: str, b: str, size: int, output: str) -> Path:
    """A photo, two styles, a 50/50 mix and a masked result, side by side."""
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import load_image
    from stylenet.io.sheets import contact_sheet

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    img = load_image(photo)
    img.thumbnail((size, size), Image.LANCZOS)
    mask = Image.new("L", img.size, 0)
    mask.paste(255, (0, 0, img.width // 2, img.height))
    kw = {"max_size": 0}
    images = [
        img,
        st.stylize(img, style=a, **kw),
        st.stylize(img, style=b, **kw),
        st.stylize(img, style=f"{a}=0.5,{b}=0.5", **kw),
        st.stylize(img, style=a, mask=mask, mask_style=b, **kw),
    ]
    labels = ["photo", a, b, "50/50 mix", f"mask: {a} | {b}"]
    return save_figure(contact_sheet(images, labels, tile=size), output)


def grid(
    checkpoint: str, photo: str, styles: list[str], size: int, output: str, ncols: int = 6
) -> Path:
    """A photo and a list of the checkpoint's styles (with their thumbnails above, when stored)."""
    import io

    from stylenet.checkpoints.format import read_checkpoint, thumbnail_bytes
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import load_image
    from stylenet.io.sheets import contact_sheet

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    ckpt = read_checkpoint(checkpoint)
    img = load_image(photo)
    img.thumbnail((size, size), Image.LANCZOS)
    images, labels = [img], ["photo"]
    for s in styles:
        images.append(st.stylize(img, style=s, max_size=0))
        labels.append(s)
    thumbs = []
    for s in styles:
        data = thumbnail_bytes(ckpt, st.style_names.index(s))
        thumbs.append(
            Image.open(io.BytesIO(data)).convert("RGB")
            if data
            else Image.new("RGB", (8, 8), "white")
        )
    if all(t.width > 8 for t in thumbs):
        images = [Image.new("RGB", (8, 8), "white"), *thumbs, *images]
        labels = ["", *[f"painting: {s}" for s in styles], *labels]
        ncols = len(styles) + 1
    return save_figure(contact_sheet(images, labels, ncols=ncols, tile=size), output)


def predicted(
    checkpoint: str, painting: str, photo: str, size: int, output: str, grown: str | None = None
) -> Path:
    """A painting the predictor never saw, a photo, the predicted row, a 50/50 mix of it with a
    bank style, and (with ``grown``: a bank grown from the prediction) the refined row."""
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import load_image
    from stylenet.io.sheets import contact_sheet

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    img = load_image(photo)
    img.thumbnail((size, size), Image.LANCZOS)
    art = load_image(painting)
    images = [art, img, st.stylize(img, style=painting, max_size=0),
              st.stylize(img, style=f"starry_night=0.5,{painting}=0.5", max_size=0)]  # fmt: skip
    labels = ["painting (not trained on)", "photo", "predicted row", "50/50 with starry_night"]
    if grown:
        g = Stylizer(grown, precision="fp32", compile="off")
        images.append(g.stylize(img, style=g.style_names[-1], max_size=0))
        labels.append("grown from it, 150 CPU steps")
    return save_figure(contact_sheet(images, labels, tile=size), output)


def fast_vs_full(
    full: str, fast: str, photo: str, styles: list[str], size: int, output: str
) -> Path:
    """A photo, then each style from the full bank above the same style from the fast bank."""
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import load_image
    from stylenet.io.sheets import contact_sheet

    nets = [(Path(c).name, Stylizer(c, precision="fp32", compile="off")) for c in (full, fast)]
    img = load_image(photo)
    img.thumbnail((size, size), Image.LANCZOS)
    images, labels = [], []
    for row, (name, st) in enumerate(nets):
        # The photo heads the first row; the second row starts with a blank tile.
        images.append(Image.new("RGB", img.size, "white") if row else img)
        labels.append("" if row else "photo")
        for s in styles:
            images.append(st.stylize(img, style=s, max_size=0))
            labels.append(f"{s}: {name}")
    return save_figure(contact_sheet(images, labels, ncols=len(styles) + 1, tile=size), output)


def palette_figure(checkpoint: str, photo: str, styles: list[str], size: int, output: str) -> Path:
    """Per style (a bank style or a style image): its painting, then the photo stylized with the
    painting's palette at 0, 0.5 and 1 (``--palette``)."""
    import io

    from stylenet.checkpoints.format import read_checkpoint, thumbnail_bytes
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import load_image
    from stylenet.io.sheets import contact_sheet

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    ckpt = read_checkpoint(checkpoint)
    img = load_image(photo)
    img.thumbnail((size, size), Image.LANCZOS)
    images, labels = [], []
    for s in styles:
        if s in st.style_names:
            art = Image.open(io.BytesIO(thumbnail_bytes(ckpt, st.style_names.index(s))))
            labels.append(f"painting: {s}")
        else:
            art = load_image(s)
            labels.append(f"style image: {Path(s).stem}")
        art = art.convert("RGB")
        scale = size / max(art.size)  # a 160 px thumbnail shown at the tile's size
        images.append(
            art.resize((round(art.width * scale), round(art.height * scale)), Image.LANCZOS)
        )
        for amount in (0.0, 0.5, 1.0):
            images.append(st.stylize(img, style=s, palette=amount, max_size=0))
            labels.append(f"--palette {amount:g}")
    return save_figure(contact_sheet(images, labels, ncols=4, tile=size), output)


def web_screenshot(checkpoint: str, photo: str, mix: dict[str, float], output: str) -> Path:
    """The web page of ``stylenet-serve`` in headless Chromium (Playwright driving the system
    browser; ``STYLENET_CHROMIUM`` or ``chromium`` on PATH) after a photo and a mix."""
    import os
    import shutil

    from playwright.sync_api import sync_playwright

    from stylenet.bench.serve import live_server

    browser_path = os.environ.get("STYLENET_CHROMIUM") or shutil.which("chromium")
    if not browser_path:
        raise SystemExit("error: no chromium on this machine (apt-get install chromium)")
    names = list(mix)
    with live_server(checkpoint, "--device", "cpu", "--default-size", "512") as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url)
            page.wait_for_selector(f"[data-testid=style-{names[-1]}] img")
            page.set_input_files("[data-testid=file]", photo)
            page.wait_for_function(
                "document.querySelector('[data-testid=result]').src.startsWith('blob:')",
                timeout=120_000,
            )
            for name in names[1:]:
                old = page.get_attribute("[data-testid=result]", "src")
                page.click(f"[data-testid=style-{name}]")
                page.locator(f"[data-testid=mix-{name}]").fill(str(mix[name]))
                page.wait_for_function(
                    "(old) => document.querySelector('[data-testid=result]').src !== old",
                    arg=old,
                    timeout=120_000,
                )
            page.wait_for_function(
                "document.querySelector('[data-testid=timing]').textContent.includes('ms')"
            )
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=output, type="jpeg", quality=FIGURE_QUALITY)
            browser.close()
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Regenerate the README figures from shipped checkpoints."
    )
    p.add_argument("--checkpoint", default="checkpoints/bank_all.pt", help="the bank to show")
    p.add_argument("--photo", default="stylenet/assets/content/gcompris_worldanimals_lemur.jpg",
                   help="the photo to stylize")  # fmt: skip
    p.add_argument("--a", default="starry_night", help="first style of the hero figure")
    p.add_argument("--b", default="the_scream", help="second style of the hero figure")
    p.add_argument("--size", type=int, default=384, help="tile size, px")
    p.add_argument("--output", default="docs/images/hero.jpg", help="the hero figure")
    p.add_argument("--grown", default=None, help="a grown bank: also draw its added style")
    p.add_argument("--added", default="mosaic", help="the added style's name in --grown")
    p.add_argument("--mosaic", default=None, help="write the demonstration painting here and stop")
    p.add_argument("--web", action="store_true", help="also screenshot the web page (chromium)")
    p.add_argument("--fast", default=None,
                   help="a fast bank of the same styles: also draw docs/images/fast.jpg")  # fmt: skip
    p.add_argument("--palette-styles", default=None,
                   help="comma-separated styles or style images: draw docs/images/palette.jpg")  # fmt: skip
    p.add_argument(
        "--painting",
        default=None,
        help="a painting the predictor did not train on: draw docs/images/predicted.jpg",
    )
    p.add_argument("--painting-grown", default=None,
                   help="with --painting: a bank grown from its prediction (its last style)")  # fmt: skip
    args = p.parse_args(argv)
    if args.mosaic:
        from stylenet.io.files import save_image

        save_image(mosaic_painting(), Path(args.mosaic), quality=92)
        print(args.mosaic)
        return 0
    if args.palette_styles:
        out = Path(args.output).with_name("palette.jpg")
        styles = [t.strip() for t in args.palette_styles.split(",") if t.strip()]
        print(palette_figure(args.checkpoint, args.photo, styles, args.size * 5 // 6, str(out)))
        return 0
    if args.painting:
        out = Path(args.output).with_name("predicted.jpg")
        print(predicted(args.checkpoint, args.painting, args.photo, args.size * 5 // 6, str(out),
                        args.painting_grown))  # fmt: skip
        return 0
    print(hero(args.checkpoint, args.photo, args.a, args.b, args.size, args.output))
    if args.grown:
        out = Path(args.output).with_name("grown.jpg")
        styles = [args.a, args.b, args.added]
        print(grid(args.grown, args.photo, styles, args.size * 5 // 6, str(out), ncols=4))
    if args.fast:
        out = Path(args.output).with_name("fast.jpg")
        styles = [args.a, args.b, "night_cafe"]
        print(fast_vs_full(args.checkpoint, args.fast, args.photo, styles, args.size * 5 // 6,
                           str(out)))  # fmt: skip
    if args.web:
        out = Path(args.output).with_name("web.jpg")
        print(web_screenshot(args.checkpoint, args.photo, {args.a: 0.6, args.b: 0.4}, str(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
