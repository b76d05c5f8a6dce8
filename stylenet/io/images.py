"""Image plumbing shared by every part of the package: decoding any file to RGB, tensors in and
out, padding to a multiple of the network's stride, BT.601 luma and chroma, long-side resizing.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from stylenet.errors import ImageReadError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
)

# Refuse decompression bombs. Pillow warns at 89 MP by default; 40 MP photos are legitimate, and
# 300 MP (a 20000x15000 panorama) is the most a single decode may allocate (900 MB as RGB).
MAX_IMAGE_PIXELS = 300_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Every open checks the limit itself (``_check_pixels``) and refuses with one line; Pillow's own
# warning between 1x and 2x its limit would only repeat that.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# What Pillow raises on a malformed EXIF block (bad offsets, wrong types, short data); the image
# is then read without its orientation rather than lost.
EXIF_ERRORS = (OSError, ValueError, SyntaxError, KeyError, TypeError, IndexError, struct.error)

# ITU-R BT.601 luma weights (the YCbCr of JPEG), used for colour preservation, luminance-only
# optimization and the evaluation's SSIM.
LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- decoding


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, EXIF orientation applied, transparency over white."""
    try:
        img = ImageOps.exif_transpose(img)
    except EXIF_ERRORS:  # broken EXIF must not lose the image
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def _check_file(p: Path) -> None:
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: empty file")


def _check_pixels(p: Path, im: Image.Image) -> None:
    """The same pixel limit everywhere, from the header, before anything is decoded (Pillow
    itself only refuses twice its limit and warns below)."""
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            f"{p}: {w}x{h} is {w * h / 1e6:.0f} megapixels, more than {MAX_IMAGE_PIXELS / 1e6:.0f}; "
            "refusing to decode it"
        )


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB, or raise ``ImageReadError`` naming the file and the problem."""
    p = Path(path)
    _check_file(p)
    try:
        with Image.open(p) as im:
            _check_pixels(p, im)
            im.load()
            return to_rgb(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"{p}: more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; refusing to decode it"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file's header, without decoding the pixels."""
    p = Path(path)
    _check_file(p)
    try:
        with Image.open(p) as im:
            _check_pixels(p, im)
            w, h = im.size
            try:  # orientations 5-8 swap the sides when the EXIF rotation is applied
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
            except EXIF_ERRORS:
                pass
            return w, h
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"{p}: more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; refusing to decode it"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e


def image_frames(path: str | os.PathLike) -> int:
    """How many frames a file holds (an animated GIF or WebP: several; a photo: 1)."""
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1) or 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1


def verify_decodes(path: str | os.PathLike) -> tuple[int, int]:
    """Decode the whole file (truncated data fails here, not later in a training worker) and
    return its ``(width, height)``. JPEGs decode in Pillow's draft mode at 1/8 scale, which still
    reads every entropy-coded byte (so truncation is caught) at a fraction of the cost."""
    p = Path(path)
    _check_file(p)
    try:
        with Image.open(p) as im:
            _check_pixels(p, im)
            size = im.size
            if im.format == "JPEG":
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
            return size
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"{p}: more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; refusing to decode it"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e


def list_images(root: str | os.PathLike, exclude: list[Path] | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, hidden files skipped), sorted; files under any
    folder in ``exclude`` (an output folder inside the input, say) are left out."""
    root = Path(root)
    skip = [Path(os.path.abspath(e)) for e in (exclude or [])]
    files = []
    for p in root.rglob("*"):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith(".") or not p.is_file():
            continue
        if skip:
            ap = Path(os.path.abspath(p))
            if any(ap.is_relative_to(s) for s in skip):
                continue
        files.append(p)
    return sorted(files)


# ----------------------------------------------------------------------------- tensors


def image_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def frame_to_tensor(frame: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] array (a video frame) -> [1, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float().div_(255.0)[None]


def tensor_to_array(t: Tensor) -> np.ndarray:
    """[3, H, W] or [1, 3, H, W] in [0, 1] -> uint8 [H, W, 3], rounded."""
    t = t.detach().float().clamp(0, 1).cpu()
    if t.dim() == 4:
        t = t[0]
    return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def tensor_to_image(t: Tensor) -> Image.Image:
    return Image.fromarray(tensor_to_array(t), "RGB")


# ----------------------------------------------------------------------------- geometry


def pad_to_multiple(x: Tensor, multiple: int = 4, mode: str = "reflect") -> Tensor:
    """Pad the bottom and right of [..., H, W] up to multiples of ``multiple``.

    The network's two stride-2 stages need sides divisible by 4 to give back the input's exact
    size. ``reflect`` (the default, for images) falls back to ``replicate`` where the image is
    too small to reflect; weight maps pass ``mode="replicate"``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    if mode == "reflect" and min(h, w) <= max(ph, pw):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def fit_long_side(h: int, w: int, size: int, minimum: int = 1) -> tuple[int, int]:
    """``(h', w')`` with the longer side equal to ``size`` and the aspect ratio kept."""
    f = size / max(h, w)
    return max(minimum, round(h * f)), max(minimum, round(w * f))


def cap_long_side(h: int, w: int, max_size: int, minimum: int = 1) -> tuple[int, int]:
    """Shrink so the longer side is at most ``max_size`` (0: no cap); never enlarge."""
    if not max_size or max(h, w) <= max_size:
        return h, w
    return fit_long_side(h, w, max_size, minimum)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of [B, C, H, W] (antialiased when shrinking); a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_long(x: Tensor, size: int, minimum: int = 1) -> Tensor:
    """Resize [B, C, H, W] so its longer side is ``size``."""
    return resize(x, fit_long_side(*x.shape[-2:], size, minimum))


# ----------------------------------------------------------------------------- colour


def luma(x: Tensor) -> Tensor:
    """BT.601 luma of [..., 3, H, W] -> [..., 1, H, W]."""
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def chroma(x: Tensor) -> tuple[Tensor, Tensor]:
    """BT.601 (JPEG) Cb and Cr of [..., 3, H, W], each [..., H, W], centred on 0."""
    r, g, b = x.unbind(-3)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return cb, cr


def from_ycbcr(y: Tensor, cb: Tensor, cr: Tensor) -> Tensor:
    """Inverse of ``luma`` / ``chroma``: [..., H, W] planes -> [..., 3, H, W]."""
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=-3)


def preserve_color(stylized: Tensor, original: Tensor) -> Tensor:
    """Luminance of ``stylized`` with the chrominance of ``original`` (BT.601 YCbCr, as in Gatys
    et al. 2016, "Preserving Color in Neural Artistic Style Transfer", luminance-only transfer).
    Both [.., 3, H, W] in [0, 1], same size."""
    cb, cr = chroma(original)
    return from_ycbcr(luma(stylized).squeeze(-3), cb, cr).clamp(0, 1)
