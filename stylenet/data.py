"""Content images for training: a folder of photos (recursive) or a COCO annotation JSON.

Bad files never stop a run: files that cannot even be identified are dropped (and counted) when
the set is scanned; files that fail later (truncated data) are replaced by another image and
counted per batch, and the count is logged by the training system.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_CONTENT_DIR = ASSETS / "content"
STYLE_DIR = ASSETS / "styles"

# Refuse decompression bombs (Pillow warns at 89 MP by default; 40 MP photos are legitimate).
Image.MAX_IMAGE_PIXELS = 300_000_000


class DataError(ValueError):
    pass


class ImageReadError(ValueError):
    pass


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, EXIF orientation applied, transparency over white."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not lose the image
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


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB, or raise ``ImageReadError`` naming the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: empty file")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{p}: {e}") from e


def image_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [0, 1]."""
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)


def tensor_to_image(t: Tensor) -> Image.Image:
    t = t.detach().float().clamp(0, 1).cpu()
    if t.dim() == 4:
        t = t[0]
    arr = (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def list_images(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    files = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    ]
    return sorted(files)


def coco_images(annotation: str | os.PathLike, image_root: str | os.PathLike) -> list[Path]:
    ann = Path(annotation)
    if not ann.is_file():
        raise DataError(f"COCO annotation file {ann} does not exist")
    try:
        meta = json.loads(ann.read_text())
        names = [im["file_name"] for im in meta["images"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{ann} is not a COCO annotation file ({e})") from e
    root = Path(image_root)
    return [root / n for n in names]


@dataclass
class ScanResult:
    files: list[Path]
    sizes: list[tuple[int, int]]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def scan_images(files: Sequence[Path], min_size: int = 0, small: str = "upscale") -> ScanResult:
    """Read each file's header (cheap: no decoding) and keep the usable ones.

    Unreadable files are skipped and counted by reason. Images whose shorter side is below
    ``min_size`` are upscaled at load time (``small="upscale"``) or skipped (``small="skip"``).
    """
    if small not in ("upscale", "skip"):
        raise ValueError(f"data.small_images must be 'upscale' or 'skip', got {small!r}")
    keep: list[Path] = []
    sizes: list[tuple[int, int]] = []
    skipped: dict[str, list[str]] = {}
    for p in files:
        try:
            if p.stat().st_size == 0:
                raise ImageReadError("empty file")
            with Image.open(p) as im:
                w, h = im.size
        except FileNotFoundError:
            skipped.setdefault("missing", []).append(str(p))
            continue
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImageReadError):
            skipped.setdefault("unreadable", []).append(str(p))
            continue
        if min(w, h) < min_size and small == "skip":
            skipped.setdefault("too small", []).append(str(p))
            continue
        keep.append(p)
        sizes.append((w, h))
    return ScanResult(keep, sizes, skipped)


class ContentDataset(Dataset):
    """Random resized crops (with horizontal flips) of content photos, in [0, 1].

    Returns ``(image [3, S, S], failures)``; ``failures`` counts files that failed to decode and
    were replaced by another image for this item.
    """

    def __init__(
        self,
        files: Sequence[Path],
        image_size: int = 256,
        scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        max_retries: int = 10,
    ) -> None:
        if not files:
            raise DataError("ContentDataset needs at least one image")
        self.files = list(files)
        self.image_size = int(image_size)
        self.max_retries = max_retries
        ops: list = [T.RandomResizedCrop(self.image_size, scale=tuple(scale), antialias=True)]
        if hflip:
            ops.append(T.RandomHorizontalFlip())
        self.transform = T.Compose(ops)
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> Tensor:
        img = load_image(self.files[i])
        short = min(img.size)
        if short < self.image_size:  # upscale deliberately so the crop has real pixels to take
            f = self.image_size / short
            img = img.resize(
                (
                    max(self.image_size, round(img.width * f)),
                    max(self.image_size, round(img.height * f)),
                ),
                Image.BICUBIC,
            )
        return self.transform(image_to_tensor(img))

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        failures = 0
        idx = i
        for _ in range(self.max_retries):
            if idx not in self._bad:
                try:
                    return self._load(idx), failures
                except ImageReadError as e:
                    self._bad.add(idx)
                    failures += 1
                    log.warning("skipping %s", e)
            idx = random.randrange(len(self.files))
        raise DataError(
            f"{self.max_retries} images in a row failed to load; is the data set broken?"
        )


def collate(batch: list[tuple[Tensor, int]]) -> dict[str, Tensor]:
    imgs, fails = zip(*batch, strict=True)
    return {"image": torch.stack(imgs), "failures": torch.tensor(sum(fails))}


def resolve_data_path(path: str | os.PathLike | None) -> Path | None:
    if path is None or str(path) == "":
        return None
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    if str(path).startswith("sample") or str(path) == "content":
        return SAMPLE_CONTENT_DIR
    return p


class ContentDataModule(pl.LightningDataModule):
    """Train split of the content set plus a few held-out photos for the sample grid."""

    def __init__(
        self,
        root: str | None = None,
        annotations: str | None = None,
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        scale: Sequence[float] = (0.5, 1.0),
        hflip: bool = True,
        small_images: str = "upscale",
        num_samples: int = 4,
        sample_size: int = 256,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = resolve_data_path(root) or SAMPLE_CONTENT_DIR
        self.annotations = annotations
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.scale = (float(scale[0]), float(scale[1]))
        self.hflip = hflip
        self.small_images = small_images
        self.num_samples = int(num_samples)
        self.sample_size = int(sample_size)
        self.pin_memory = pin_memory
        self.seed = seed
        self.scan: ScanResult | None = None
        self.train_files: list[Path] = []
        self.sample_files: list[Path] = []

    def prepare(self) -> ScanResult:
        """Scan the content set; raise ``DataError`` before any model is built if it is unusable."""
        if self.scan is not None:
            return self.scan
        if not self.root.exists():
            raise DataError(f"data.root={self.root} does not exist")
        if self.annotations:
            candidates = coco_images(self.annotations, self.root)
        else:
            if not self.root.is_dir():
                raise DataError(f"data.root={self.root} is not a directory")
            candidates = list_images(self.root)
        if not candidates:
            raise DataError(
                f"data.root={self.root} holds no image files "
                f"(looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        scan = scan_images(candidates, self.image_size, self.small_images)
        if scan.num_skipped:
            detail = "; ".join(f"{k}: {len(v)} (e.g. {v[0]})" for k, v in scan.skipped.items())
            log.warning(
                "content set: skipped %d of %d files (%s)",
                scan.num_skipped,
                len(candidates),
                detail,
            )
        if not scan.files:
            raise DataError(
                f"data.root={self.root}: none of {len(candidates)} files is a usable image"
            )
        files = list(scan.files)
        # Held-out photos for the sample grid: a fixed, seeded choice, never trained on (as long
        # as the set is large enough to spare them).
        n_hold = min(self.num_samples, max(0, len(files) - 1))
        rng = random.Random(self.seed)
        held = sorted(rng.sample(range(len(files)), n_hold)) if n_hold else []
        self.sample_files = [files[i] for i in held]
        held_set = set(held)
        self.train_files = [f for i, f in enumerate(files) if i not in held_set] or files
        self.scan = scan
        log.info(
            "content set: %d training images, %d held-out sample images (root %s)",
            len(self.train_files),
            len(self.sample_files),
            self.root,
        )
        return scan

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        self.train_set = ContentDataset(self.train_files, self.image_size, self.scale, self.hflip)

    def sample_images(self) -> Tensor:
        """Held-out photos, centre-cropped squares of ``sample_size``: [N, 3, s, s]."""
        self.prepare()
        out = []
        for p in self.sample_files:
            try:
                img = load_image(p)
            except ImageReadError as e:
                log.warning("sample grid: %s", e)
                continue
            t = image_to_tensor(img)
            t = TF.resize(t, self.sample_size, antialias=True)
            out.append(TF.center_crop(t, [self.sample_size, self.sample_size]))
        return torch.stack(out) if out else torch.empty(0, 3, self.sample_size, self.sample_size)

    def train_dataloader(self) -> DataLoader:
        pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            pin_memory=pin,
            drop_last=len(self.train_set) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
