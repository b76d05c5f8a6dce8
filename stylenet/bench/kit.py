"""What a GPU machine without package registries needs to run ``stylenet-bench --suite gpu``
from a copy of the source tree: the VGG16 layers up to relu4_3 in fp16 (about 15 MB) and wheels
of the pure-Python packages it lacks (Hydra, OmegaConf, ANTLR's runtime); with ``--content-dir``,
also the photos to train on there, made small (``pack_photos``).

    stylenet-bench --gpu-kit .gpu-kit        # here, where PyPI is reachable
    stylenet-bench --gpu-kit .gpu-kit --content-dir photos/ --photos heldout.txt

then, on the GPU machine, from the copied tree (docs/gpu.md):

    pip install --no-index --no-deps --target /tmp/site .gpu-kit/*.whl
    PYTHONPATH=/tmp/site:. python -m stylenet.cli.bench --suite gpu \
        --vgg-weights-path .gpu-kit/vgg16_relu43_fp16.pth --results-dir "$OUT"
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Pure-Python wheels the device machine lacks (its package list has torch, Lightning,
# TensorBoard, Pillow, onnx and onnxruntime): hydra-core and what it needs.
KIT_WHEELS = ("hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3")


def prepare_kit(out: Path, python_version: str = "3.12") -> list[Path]:
    from stylenet.losses.weights import export_compact

    out.mkdir(parents=True, exist_ok=True)
    made = [export_compact(out / "vgg16_relu43_fp16.pth")]
    for req in KIT_WHEELS:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "py", "--abi", "none",
               "--platform", "any", "-d", str(out), req]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            # antlr4's runtime is published as an sdist only: build its (pure-Python) wheel here
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                "-w", str(out), req], capture_output=True, text=True)  # fmt: skip
            if r.returncode != 0:
                raise RuntimeError(f"cannot fetch {req}: {(r.stderr or r.stdout).strip()[-300:]}")
    made += sorted(out.glob("*.whl"))
    return made


# Training photos are kept at 288 px on the shorter side, JPEG quality 85. A training crop
# covers at least half of a photo's area (data.scale's lower bound, 0.5) and is resized to 256 px
# (data.image_size), so its shorter side is at least about 0.82 of the photo's (4:3): 288 px
# keeps such a crop within 1.1x of its own pixels. The 119 training photos of the project's
# content folder (22 MB with the held-out ones) take 4.6 MB so, where 320 px at quality 90 took
# 6.8 MB: with the 15 MB VGG16 file and the source tree (git ls-files) that would have been over
# 64 MiB together.
KIT_TRAIN_SHORT = 288
KIT_QUALITY = 85


@dataclass
class PackedPhotos:
    train: list[Path] = field(default_factory=list)
    held_out: int = 0  # photos named in the held-out list, left behind
    skipped: list[str] = field(default_factory=list)  # "path: why", for files that did not decode


def pack_photos(src: Path, out: Path, heldout: set[str] | None = None,
                short_side: int = KIT_TRAIN_SHORT, quality: int = KIT_QUALITY) -> PackedPhotos:  # fmt: skip
    """The training photos under ``src`` made small for a trip to another machine, in
    ``out/photos/``: ``short_side`` px on the shorter side (never enlarged), JPEG, the folder
    structure kept (``x.png`` -> ``x.jpg``; two sources that would land on one name are an error).
    Photos named in ``heldout`` (by file name or path relative to ``src``, as ``data.exclude``
    reads them) are left behind: what is evaluated on cannot be trained on there. Files that do
    not decode are skipped and counted. ``out/photos/`` is written afresh."""
    import shutil

    from PIL import Image

    from stylenet.data.photos import apply_exclusions
    from stylenet.errors import DataError, ImageReadError
    from stylenet.io.files import save_image
    from stylenet.io.images import list_images, load_image

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"{src} is not a folder of photos", option="content-dir")
    dest = out / "photos"
    if dest.exists():  # a packing of other photos must not linger there
        shutil.rmtree(dest)
    packed = PackedPhotos()
    files, packed.held_out = apply_exclusions(
        list_images(src, exclude=[out]), src, heldout or set()
    )
    seen: dict[Path, Path] = {}
    for f in files:
        target = dest / f.relative_to(src).with_suffix(".jpg")
        if target in seen:
            raise DataError(f"{seen[target]} and {f} would both be packed as {target}",
                            option="content-dir")  # fmt: skip
        seen[target] = f
        try:
            img = load_image(f)
        except ImageReadError as e:
            packed.skipped.append(str(e))
            continue
        w, h = img.size
        scale = short_side / min(w, h)
        if scale < 1:
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        save_image(img, target, quality=quality)
        packed.train.append(target)
    return packed


def tree_bytes(root: Path) -> int | None:
    """Bytes of the files git tracks under ``root`` (what a copy of the source tree carries),
    or None outside a git checkout."""
    try:
        r = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True)
    except OSError:  # no git on this machine
        return None
    if r.returncode != 0:
        return None
    names = [n for n in r.stdout.decode().split("\0") if n]
    return sum((root / n).stat().st_size for n in names if (root / n).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
