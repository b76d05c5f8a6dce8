"""Style images for training a style predictor: photos paired with a style image per sample.

``PairedDataModule`` is the content set of ``ContentDataModule`` plus a folder of style images
(recursive; scanned like the photos, so unreadable files are skipped and counted up front, and a
file that fails later is replaced and counted). Every sample draws its own style image, augmented
as Ghiasi et al. 2017 (Sec. 3.1 and their released training code) augment theirs: random flips,
a random rescale and crop, and colour jitter (hue, saturation, contrast, brightness), so the
predictor learns a style from its texture rather than from one exact picture. A few style
images are held out of training for the sample grid (a fixed, seeded choice), beside the photos.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from stylenet.data.photos import (
    ContentDataModule,
    ContentDataset,
    apply_exclusions,
    read_exclusions,
    resolve_data_path,
    scan_images,
)
from stylenet.errors import DataError, ImageReadError, OptionError
from stylenet.io.images import IMAGE_EXTENSIONS, image_to_tensor, list_images, load_image
from stylenet.nn.network import MIN_SIZE

log = logging.getLogger(__name__)

# Colour jitter of the style images. Ghiasi et al.'s released training code perturbs hue by up to
# 0.1 (of the colour circle), saturation and contrast by up to 50% and brightness by up to 0.2:
# strong enough that the predictor cannot memorise a palette, mild enough that a painting stays
# itself. The same ranges here, in torchvision's terms.
JITTER = {"brightness": 0.2, "contrast": 0.5, "saturation": 0.5, "hue": 0.1}
# Random rescale and crop: a crop of 40-100% of the image's area, resized to the style size
# (the brush strokes are seen at up to 1.6x their size at the style size).
STYLE_SCALE = (0.4, 1.0)


def random_view(img: Tensor, size: int, gen: torch.Generator,
                scale: Sequence[float] = STYLE_SCALE) -> Tensor:  # fmt: skip
    """A square crop of ``scale`` of ``img``'s area ([3, H, W]) at ``size``, flipped either way
    at random: the training styles' view without their colour jitter, drawn from ``gen``."""
    h, w = img.shape[-2:]
    u = torch.rand(3, generator=gen).tolist()
    area = (scale[0] + (scale[1] - scale[0]) * u[0]) * h * w
    side = max(1, min(h, w, round(area**0.5)))
    top = int(u[1] * (h - side + 1))
    left = int(u[2] * (w - side + 1))
    view = TF.resize(img[:, top : top + side, left : left + side], [size, size], antialias=True)
    flips = torch.rand(2, generator=gen).tolist()
    if flips[0] < 0.5:
        view = view.flip(-1)
    if flips[1] < 0.5:
        view = view.flip(-2)
    return view.clamp(0, 1)


class StyleImageDataset(Dataset):
    """Augmented style images, ``[3, s, s]`` in [0, 1]; ``extra`` files are drawn with
    probability ``extra_share`` (the paintings of a bank, say, among thousands of textures)."""

    def __init__(
        self,
        files: Sequence[Path],
        size: int = 256,
        extra: Sequence[Path] = (),
        extra_share: float = 0.0,
        scale: Sequence[float] = STYLE_SCALE,
        augment: bool = True,
        max_retries: int = 10,
    ) -> None:
        if not files and not extra:
            raise DataError("the style set needs at least one image")
        self.files = list(files)
        self.extra = list(extra)
        self.extra_share = float(extra_share) if self.files else 1.0
        self.size = int(size)
        self.max_retries = max_retries
        ops: list = [T.RandomResizedCrop(self.size, scale=tuple(scale), antialias=True)]
        if augment:
            ops += [T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.ColorJitter(**JITTER)]
        self.transform = T.Compose(ops)
        self._bad: set[Path] = set()
        self.failures = 0

    def draw(self) -> Path:
        if self.extra and (not self.files or random.random() < self.extra_share):
            return random.choice(self.extra)
        return random.choice(self.files)

    def load(self, p: Path) -> Tensor:
        img = load_image(p)
        img.thumbnail((self.size * 4, self.size * 4))  # a huge style image costs no more
        t = image_to_tensor(img)
        short = min(t.shape[-2:])
        if short < self.size:  # upscale small textures so the crop has pixels to take
            t = TF.resize(t, self.size, antialias=True)
        return self.transform(t).clamp(0, 1)

    def sample(self) -> tuple[Tensor, int]:
        failures = 0
        for _ in range(self.max_retries):
            p = self.draw()
            if p in self._bad:
                continue
            try:
                return self.load(p), failures
            except ImageReadError as e:
                self._bad.add(p)
                failures += 1
                log.warning("skipping style image %s", e)
        raise DataError(f"{self.max_retries} style images in a row failed to load")

    def __len__(self) -> int:
        return len(self.files) + len(self.extra)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        del i  # every sample draws its own style image
        return self.sample()


class PairedDataset(Dataset):
    """A content crop and a random style image per sample."""

    def __init__(self, content: ContentDataset, styles: StyleImageDataset) -> None:
        self.content = content
        self.styles = styles

    def __len__(self) -> int:
        return len(self.content)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        x, f1 = self.content[i]
        s, f2 = self.styles.sample()
        return x, s, f1 + f2


def collate_pairs(batch: list[tuple[Tensor, Tensor, int]]) -> dict[str, Tensor | int]:
    xs, ss, fails = zip(*batch, strict=True)
    return {"image": torch.stack(xs), "style": torch.stack(ss), "failures": int(sum(fails))}


class PairedDataModule(ContentDataModule):
    """The content set plus a style-image folder (``styles``) and listed ``style_extra`` files;
    ``style_exclude`` (a list, or a text file of names) keeps files out of training."""

    def __init__(
        self,
        styles: str | None = None,
        style_exclude: str | Sequence[str] | None = None,
        style_extra: Sequence[str] = (),
        style_extra_share: float = 0.0,
        style_size: int = 256,
        style_scale: Sequence[float] = STYLE_SCALE,
        num_style_samples: int = 4,
        **content: object,
    ) -> None:
        super().__init__(**content)  # type: ignore[arg-type]
        if not styles and not style_extra:
            raise OptionError(
                "a style predictor trains on a folder of style images: set data.styles",
                option="styles",
            )
        self.styles_root = resolve_data_path(styles) if styles else None
        self.style_exclude = read_exclusions(style_exclude)
        self.style_extra = [Path(os.path.expanduser(str(p))) for p in style_extra or ()]
        self.style_extra_share = float(style_extra_share)
        self.style_size = int(style_size)
        self.style_scale = (float(style_scale[0]), float(style_scale[1]))
        self.num_style_samples = int(num_style_samples)
        if self.style_size < MIN_SIZE:
            raise OptionError(f"must be at least {MIN_SIZE} px, got {style_size}",
                              option="style_size")  # fmt: skip
        if not 0.0 <= self.style_extra_share <= 1.0:
            raise OptionError(f"must be within 0..1, got {style_extra_share}",
                              option="style_extra_share")  # fmt: skip
        self.style_files: list[Path] = []
        self.style_sample_files: list[Path] = []
        self.styles_skipped = 0
        self.styles_excluded = 0

    def prepare(self):  # noqa: ANN201  (a ScanResult)
        scan = super().prepare()
        if self.style_files or self.style_sample_files:
            return scan
        for p in self.style_extra:
            if not p.is_file():
                raise DataError(f"style image {p} does not exist", option="style_extra")
        files: list[Path] = []
        if self.styles_root is not None:
            root = self.styles_root
            if not root.is_dir():
                raise DataError(f"{root} is not a folder of style images", option="styles")
            found = list_images(root)
            if not found and not self.style_extra:
                raise DataError(
                    f"{root} holds no image files (looked recursively for "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))})",
                    option="styles",
                )
            found, self.styles_excluded = apply_exclusions(found, root, self.style_exclude)
            checked = scan_images(found, 0, "upscale", cache=self.scan_cache, progress=True)
            self.styles_skipped = checked.num_skipped
            if checked.num_skipped:
                log.warning(
                    "style set: skipped %d of %d files (%s)", checked.num_skipped, len(found),
                    "; ".join(f"{k}: {len(v)}" for k, v in checked.skipped.items()),
                )  # fmt: skip
            files = list(checked.files)
        n_hold = min(self.num_style_samples, max(0, len(files) - 1))
        rng = random.Random(self.seed + 1)
        held = set(rng.sample(range(len(files)), n_hold)) if n_hold else set()
        self.style_sample_files = [f for i, f in enumerate(files) if i in held]
        self.style_files = [f for i, f in enumerate(files) if i not in held]
        if not self.style_files and not self.style_extra:
            raise DataError("no usable style image left to train on", option="styles")
        log.info(
            "style set: %d training images%s, %d left out (data.style_exclude), %d held out "
            "for the sample grid", len(self.style_files),
            f" + {len(self.style_extra)} listed" if self.style_extra else "",
            self.styles_excluded, len(self.style_sample_files),
        )  # fmt: skip
        return scan

    def style_dataset(self, augment: bool = True) -> StyleImageDataset:
        self.prepare()
        return StyleImageDataset(
            self.style_files, self.style_size, self.style_extra, self.style_extra_share,
            self.style_scale, augment,
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.train_pairs = PairedDataset(self.train_set, self.style_dataset())

    def style_samples(self) -> Tensor:
        """The held-out style images as squares of the style size: ``[N, 3, s, s]``."""
        self.prepare()
        out = []
        for p in self.style_sample_files:
            try:
                t = image_to_tensor(load_image(p))
            except ImageReadError as e:
                log.warning("sample grid: %s", e)
                continue
            t = TF.resize(t, self.style_size, antialias=True)
            out.append(TF.center_crop(t, [self.style_size, self.style_size]))
        s = self.style_size
        return torch.stack(out) if out else torch.empty(0, 3, s, s)

    def statistics_sample(self, n: int = 64, seed: int = 0) -> Tensor:
        """``n`` un-augmented style images (``[n, 3, s, s]``) drawn with a fixed seed, for the
        predictor's input standardisation."""
        ds = self.style_dataset(augment=False)
        state = random.getstate()
        random.seed(seed)
        try:
            return torch.stack([ds.sample()[0] for _ in range(n)])
        finally:
            random.setstate(state)

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_pairs, collate_pairs)
