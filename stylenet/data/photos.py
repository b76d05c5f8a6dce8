"""Content images for training: a folder of photos (recursive) or a COCO annotation JSON.

Bad files never stop a run and are always counted: the set is scanned before any model is
built, and the scan decodes every file completely (on worker threads; JPEGs in Pillow's fast
draft mode), so unreadable, empty and truncated files are dropped and reported up front. Scan
results are cached per file (path, size, modification time), so a second run over the same set
costs nothing. A file that still fails at load time is replaced by another image and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from stylenet.errors import DataError, ImageReadError, OptionError
from stylenet.io.files import write_text
from stylenet.io.images import (
    IMAGE_EXTENSIONS,
    image_to_tensor,
    list_images,
    load_image,
    verify_decodes,
)
from stylenet.io.paths import SAMPLE_CONTENT_DIR, cache_dir
from stylenet.nn.network import MIN_SIZE
from stylenet.runtime.device import cuda_available

log = logging.getLogger(__name__)

# Scan-cache format; bump when what is cached changes meaning (2: "too large" and the
# MIN_SIZE floor are new reasons).
_SCAN_CACHE_VERSION = 2
# Fewer training photos than this gets a warning: the shipped sample set (26 training photos) is
# the smallest set this project has trained networks on that then stylized photos they never saw
# (the CPU-trained banks of BENCHMARKS.md); below about that the network memorises its photos.
MIN_TRAINING_PHOTOS = 20


def coco_images(annotation: str | os.PathLike, image_root: str | os.PathLike) -> list[Path]:
    ann = Path(annotation)
    if not ann.is_file():
        raise DataError(f"COCO annotation file {ann} does not exist", option="annotations")
    try:
        meta = json.loads(ann.read_text())
        names = [im["file_name"] for im in meta["images"]]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DataError(
            f"{ann} is not a COCO annotation file (no images[].file_name: {type(e).__name__})",
            option="annotations",
        ) from e
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


class _ScanCache:
    """``{absolute path: [size, mtime_ns, width, height, reason]}`` for one set of files, stored
    under the stylenet cache folder (keyed by the set's first file's folder)."""

    def __init__(self, files: Sequence[Path], enabled: bool) -> None:
        self.enabled = enabled and bool(files)
        self.entries: dict[str, list] = {}
        self.dirty = False
        if not self.enabled:
            return
        key = hashlib.sha1(str(Path(files[0]).resolve().parent).encode()).hexdigest()[:16]
        self.path = cache_dir() / "scans" / f"{key}.json"
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("version") == _SCAN_CACHE_VERSION:
                self.entries = raw["files"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    @staticmethod
    def _stamp(p: Path) -> tuple[int, int]:
        st = p.stat()
        return st.st_size, st.st_mtime_ns

    def get(self, p: Path) -> tuple[int, int, str] | None:
        if not self.enabled:
            return None
        e = self.entries.get(str(p.resolve()))
        try:
            if e and tuple(e[:2]) == self._stamp(p):
                return int(e[2]), int(e[3]), str(e[4])
        except OSError:
            return None
        return None

    def put(self, p: Path, w: int, h: int, reason: str) -> None:
        if not self.enabled:
            return
        try:
            self.entries[str(p.resolve())] = [*self._stamp(p), w, h, reason]
            self.dirty = True
        except OSError:
            pass

    def save(self) -> None:
        if self.enabled and self.dirty:
            try:
                write_text(
                    self.path,
                    json.dumps({"version": _SCAN_CACHE_VERSION, "files": self.entries}),
                )
            except OSError as e:  # a read-only cache folder costs a rescan next time, no more
                log.debug("scan cache not written: %s", e)


def _check_one(p: Path) -> tuple[int, int, str]:
    """(width, height, "") for a usable file, (0, 0, reason) otherwise."""
    try:
        w, h = verify_decodes(p)
        return w, h, ""
    except ImageReadError as e:
        if not p.exists():
            return 0, 0, "missing"
        if "empty file" in e.message:
            return 0, 0, "empty"
        if "megapixels" in e.message:
            return 0, 0, "too large"
        if "truncated" in e.message.lower():
            return 0, 0, "truncated"
        return 0, 0, "unreadable"
    except OSError:
        return 0, 0, "unreadable"


def read_exclusions(spec: str | os.PathLike | Sequence[str] | None) -> set[str]:
    """``data.exclude``: file names (or paths relative to ``data.root``) kept out of training,
    given as a list or as a text file with one name per line (``#`` starts a comment)."""
    if spec is None or spec == "":
        return set()
    if isinstance(spec, (str, os.PathLike)):
        p = Path(os.path.expanduser(str(spec)))
        if not p.is_file():
            raise DataError(f"{p} does not exist (a text file of file names, one per line)",
                            option="exclude")  # fmt: skip
        try:
            lines = p.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {p} ({type(e).__name__})", option="exclude") from e
    else:
        lines = [str(x) for x in spec]
    return {ln.split("#", 1)[0].strip() for ln in lines} - {""}


def apply_exclusions(files: Sequence[Path], root: Path, names: set[str]) -> tuple[list[Path], int]:
    """``files`` without those named in ``names`` (by file name or path relative to ``root``),
    and how many were left out."""
    if not names:
        return list(files), 0
    keep = []
    for f in files:
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
        if f.name in names or rel in names:
            continue
        keep.append(f)
    return keep, len(files) - len(keep)


def scan_images(
    files: Sequence[Path],
    min_size: int = 0,
    small: str = "upscale",
    workers: int | None = None,
    cache: bool = True,
    progress: bool = False,
) -> ScanResult:
    """Decode each file once and keep the usable ones; skipped files are counted by reason.

    Images whose shorter side is below ``min_size`` are upscaled at load time
    (``small="upscale"``) or skipped (``small="skip"``).
    """
    if small not in ("upscale", "skip"):
        raise OptionError(f"must be 'upscale' or 'skip', got {small!r}", option="small_images")
    files = list(files)
    store = _ScanCache(files, cache)
    results: list[tuple[int, int, str] | None] = [store.get(p) for p in files]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        n = workers if workers is not None else min(8, os.cpu_count() or 1)
        bar = None
        if progress and len(todo) > 200:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="checking photos", unit="img", leave=False)
        with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
            for i, r in zip(todo, pool.map(_check_one, [files[i] for i in todo]), strict=True):
                results[i] = r
                if r[2] != "missing":
                    store.put(files[i], *r)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        store.save()
    keep: list[Path] = []
    sizes: list[tuple[int, int]] = []
    skipped: dict[str, list[str]] = {}
    for p, r in zip(files, results, strict=True):
        assert r is not None
        w, h, reason = r
        if reason:
            skipped.setdefault(reason, []).append(str(p))
            continue
        # Below MIN_SIZE on its shorter side a photo is a strip, not a picture: upscaling a
        # 1x4000 strip to a 256 px crop would make a 256x1,024,000 image. Skipped either way.
        if min(w, h) < MIN_SIZE or (min(w, h) < min_size and small == "skip"):
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
            raise DataError("the content set needs at least one image")
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


def collate(batch: list[tuple[Tensor, int]]) -> dict[str, Tensor | int]:
    """Stack crops; ``failures`` stays a Python int (moving it to the GPU and reading it back
    would cost a host sync every step)."""
    imgs, fails = zip(*batch, strict=True)
    return {"image": torch.stack(imgs), "failures": int(sum(fails))}


class LongEpochSampler(Sampler[int]):
    """Shuffled passes over the data set, concatenated into an epoch of at least ``min_samples``.

    On a small photo set a plain shuffled loader ends its epoch every few steps, and every epoch
    end drains the worker pipeline and restarts it (the per-epoch stalls seen with 8 steps per
    epoch on a GPU); long epochs keep the workers streaming. Each epoch reshuffles
    (``set_epoch``, which Lightning calls), and under DDP Lightning splits the indices between
    ranks.
    """

    def __init__(self, n: int, min_samples: int, seed: int = 0) -> None:
        self.n = int(n)
        self.passes = max(1, math.ceil(int(min_samples) / max(1, self.n)))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n * self.passes

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for _ in range(self.passes):
            yield from torch.randperm(self.n, generator=g).tolist()


# ``data.root`` words that name the shipped sample photos (when no folder of that name exists in
# the working directory). Only these exact words: anything else is a path, and a path that does
# not exist is an error, never a silent fall-back to the sample photos.
SAMPLE_ROOT_WORDS = ("sample", "samples")


def resolve_data_path(path: str | os.PathLike | None) -> Path | None:
    if path is None or str(path) == "":
        return None
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    if str(path) in SAMPLE_ROOT_WORDS:
        return SAMPLE_CONTENT_DIR
    return p


def _squares(files: Sequence[Path], size: int, what: str) -> Tensor:
    """``files`` resized to ``size`` on the shorter side and centre-cropped square, [N, 3, s, s];
    an unreadable file is logged and left out."""
    out = []
    for p in files:
        try:
            img = load_image(p)
        except ImageReadError as e:
            log.warning("%s: %s", what, e)
            continue
        t = TF.resize(image_to_tensor(img), size, antialias=True)
        out.append(TF.center_crop(t, [size, size]))
    return torch.stack(out) if out else torch.empty(0, 3, size, size)


class ContentDataModule(pl.LightningDataModule):
    """Train split of the content set plus a few held-out photos for the sample grid."""

    def __init__(
        self,
        root: str | None = None,
        annotations: str | None = None,
        exclude: str | Sequence[str] | None = None,
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
        min_epoch_samples: int | None = 0,
        scan_cache: bool = True,
    ) -> None:
        super().__init__()
        self.root = resolve_data_path(root) or SAMPLE_CONTENT_DIR
        self.annotations = annotations
        self.exclude = read_exclusions(exclude)
        self.num_excluded = 0
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
        self.min_epoch_samples = int(min_epoch_samples or 0)
        self.scan_cache = bool(scan_cache)
        self.scan: ScanResult | None = None
        self.train_files: list[Path] = []
        self.sample_files: list[Path] = []
        self._check_options()

    def _check_options(self) -> None:
        if self.image_size < MIN_SIZE:
            raise OptionError(
                f"the crop size is {self.image_size} px; the network needs at least {MIN_SIZE}",
                option="image_size",
            )
        if self.batch_size < 1:
            raise OptionError(f"must be at least 1, got {self.batch_size}", option="batch_size")
        if self.num_workers < 0:
            raise OptionError(f"must be 0 or more, got {self.num_workers}", option="num_workers")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise OptionError(
                f"must satisfy 0 < min <= max <= 1, got {list(self.scale)}", option="scale"
            )
        if self.sample_size < MIN_SIZE:
            raise OptionError(
                f"must be at least {MIN_SIZE} px, got {self.sample_size}", option="sample_size"
            )

    def prepare(self) -> ScanResult:
        """Scan the content set; raise ``DataError`` before any model is built if it is unusable."""
        if self.scan is not None:
            return self.scan
        if not self.root.exists():
            raise DataError(f"{self.root} does not exist", option="root")
        if self.annotations:
            candidates = coco_images(self.annotations, self.root)
        else:
            if not self.root.is_dir():
                raise DataError(f"{self.root} is not a directory", option="root")
            candidates = list_images(self.root)
        if not candidates:
            raise DataError(
                f"{self.root} holds no image files "
                f"(looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})",
                option="root",
            )
        candidates, self.num_excluded = apply_exclusions(candidates, self.root, self.exclude)
        if self.exclude:
            log.info("content set: %d photos left out (data.exclude)", self.num_excluded)
        if not candidates:
            raise DataError(f"every photo under {self.root} is excluded by data.exclude",
                            option="exclude")  # fmt: skip
        scan = scan_images(
            candidates, self.image_size, self.small_images, cache=self.scan_cache, progress=True
        )
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
                f"{self.root}: none of {len(candidates)} files is a usable image "
                f"({', '.join(f'{k}: {len(v)}' for k, v in scan.skipped.items())})",
                option="root",
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
        if len(self.train_files) < MIN_TRAINING_PHOTOS:
            log.warning(
                "warning: only %d training photo(s) (%d of %d usable photos are held out for the "
                "sample grid); a network trained on so few learns their content, not a style for "
                "any photo. Use a folder of at least %d photos (data.root)",
                len(self.train_files), len(self.sample_files), len(files), MIN_TRAINING_PHOTOS,
            )  # fmt: skip
        return scan

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        self.train_set = ContentDataset(self.train_files, self.image_size, self.scale, self.hflip)

    def sample_images(self) -> Tensor:
        """Held-out photos, centre-cropped squares of ``sample_size``: [N, 3, s, s]."""
        self.prepare()
        return _squares(self.sample_files, self.sample_size, "sample grid")

    def training_images(self, n: int) -> Tensor:
        """``n`` training photos spread evenly over the set, centre-cropped squares of the crop
        size: [<=n, 3, s, s] (a fixed batch to compare starting points on)."""
        self.prepare()
        files = self.train_files
        picked = [files[i * len(files) // n] for i in range(min(n, len(files)))] if n > 0 else []
        return _squares(picked, self.image_size, "training photos")

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, collate)

    def loader(self, dataset: Dataset, collate_fn: Callable) -> DataLoader:
        """The training loader of ``dataset``: long shuffled epochs, workers kept streaming."""
        pin = cuda_available() if self.pin_memory is None else self.pin_memory
        sampler = LongEpochSampler(len(dataset), self.min_epoch_samples, self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=pin,
            drop_last=len(sampler) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
