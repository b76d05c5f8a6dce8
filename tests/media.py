"""Media as people have it, generated at run time: phone-sized and strange photos, HD clips.

Every maker writes one file and returns its path. Photos carry a marker (a red block in the
top-left corner of the picture *as it should be seen*), so orientation can be checked after
EXIF rotation; clips are H.264 from ffmpeg's test source, the codec and pixel format cameras
and phones write.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

# EXIF orientation tag and what each value means for the stored pixels: the viewer rotates the
# stored image by this many degrees counter-clockwise (PIL's rotate) to show it upright.
ORIENTATION_TAG = 0x0112
ROTATION_FOR = {3: 180, 6: 270, 8: 90}
MARKER = (230, 20, 20)


def picture(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like uint8 [h, w, 3] image with a red marker block at its top-left."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    chans = [
        0.5 + 0.45 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)) + k)
        for k in range(3)
    ]
    arr = (np.stack(chans, -1) * 200 + 20).astype(np.uint8)
    m = max(2, min(w, h) // 8)
    arr[:m, :m] = MARKER
    return arr


def marker_corner(img: Image.Image) -> str:
    """Which corner holds the red marker: 'tl', 'tr', 'bl' or 'br'."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    m = max(2, min(w, h) // 10)
    corners = {"tl": a[:m, :m], "tr": a[:m, -m:], "bl": a[-m:, :m], "br": a[-m:, -m:]}
    redness = {k: float((v[..., 0] - v[..., 1:].mean(-1)).mean()) for k, v in corners.items()}
    return max(redness, key=redness.get)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def jpeg(path: Path, w: int, h: int, seed: int = 0, **kw) -> Path:
    return _save(Image.fromarray(picture(w, h, seed)), path, quality=90, **kw)


def exif_rotated(path: Path, orientation: int, w: int = 120, h: int = 80) -> Path:
    """A JPEG whose pixels are stored rotated, with the EXIF orientation that undoes it: seen
    upright it is ``w`` x ``h`` with the marker top-left."""
    upright = Image.fromarray(picture(w, h, seed=orientation))
    # Store the pixels so that the viewer's rotation gives the upright picture back.
    stored = upright.rotate(-ROTATION_FOR[orientation], expand=True)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return _save(stored, path, quality=92, exif=exif.tobytes())


def odd_photos(folder: Path) -> dict[str, tuple[int, int]]:
    """Every odd kind of photo in ``folder``: {file name: (width, height) as seen}. The 1x4000
    strip is not among them (it is too thin to stylize; see ``strip``)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, tuple[int, int]] = {}
    base = Image.fromarray(picture(96, 64, seed=5))

    def put(name: str, img: Image.Image, **kw) -> None:
        _save(img, folder / name, **kw)
        sizes[name] = base.size

    for o in (3, 6, 8):
        exif_rotated(folder / f"exif{o}.jpg", o, 96, 64)
        sizes[f"exif{o}.jpg"] = (96, 64)
    put("cmyk.jpg", base.convert("CMYK"), quality=92)
    a16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("grey16.png", Image.fromarray(a16))  # uint16: mode I;16
    put("grey.png", base.convert("L"))
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    pal.info["transparency"] = 0
    put("palette.png", pal, transparency=0)
    rgba = base.convert("RGBA")
    alpha = Image.new("L", base.size, 255)
    alpha.paste(0, (76, 44, 96, 64))  # the bottom-right corner is transparent
    rgba.putalpha(alpha)
    put("rgba.png", rgba)
    put("photo.webp", base, quality=90)
    put("progressive.jpg", base, quality=90, progressive=True)
    frames = [Image.fromarray(picture(96, 64, seed=s)) for s in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    sizes["animated.gif"] = (96, 64)
    return sizes


def strip(path: Path, w: int = 4000, h: int = 1) -> Path:
    return _save(Image.fromarray(picture(w, max(h, 2), seed=3)[:h]), path)


def huge_header_jpeg(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A small JPEG whose header claims ``w`` x ``h`` (400 megapixels by default): what a
    decompression bomb looks like to a reader, without allocating it here."""
    import io

    buf = io.BytesIO()
    Image.fromarray(picture(64, 48)).save(buf, "JPEG", quality=80)
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    data[i + 5 : i + 9] = struct.pack(">HH", h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def clip(path: Path, w: int, h: int, seconds: float = 2.0, fps: int = 15,
         rotation: int | None = None) -> Path:  # fmt: skip
    """An H.264 (yuv420p) clip of ffmpeg's moving test pattern; with ``rotation`` the file also
    carries a display-rotation matrix, as phones write for portrait video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path if rotation is None else path.with_name("." + path.name)
    subprocess.run(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={w}x{h}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(plain)],
        check=True, timeout=120,
    )  # fmt: skip
    if rotation is not None:
        subprocess.run(
            [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-display_rotation",
             str(rotation), "-i", str(plain), "-c", "copy", str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        plain.unlink()
    return path


def digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``: inputs must come out unchanged."""
    import hashlib

    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
