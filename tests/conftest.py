"""Shared fixtures: tiny generated images and the real Hydra configs composed with tiny overrides.

Nothing here reads ../shared or touches the network; VGG16 is built with random weights
(``loss.vgg.weights=random``) except where a test provides its own weights file.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("STYLENET_OFFLINE", "1")
os.environ.setdefault("STYLENET_FORCE_CPU", "1")
# The scan cache and anything else the package caches go to a throwaway folder, not ~/.cache.
_CACHE = tempfile.TemporaryDirectory(prefix="stylenet-test-cache-")
os.environ["STYLENET_CACHE"] = _CACHE.name

atexit.register(_CACHE.cleanup)  # removed when the session ends

from stylenet.runtime.device import torch_pair_problem  # noqa: E402

if torch_pair_problem():  # one line instead of a collection error per test module
    pytest.exit(f"error: {torch_pair_problem()}", returncode=4)

import stylenet.runtime.hydra  # noqa: E402  (registers resolvers)

CONFIG_DIR = stylenet.runtime.hydra.CONFIG_DIR

torch.set_num_threads(min(2, os.cpu_count() or 1))


def random_bank(path: Path, names: list[str], seed: int = 0, **export_kw) -> Path:
    """A tiny exported bank (one row per name, 8 channels, 1 residual block) with seeded random
    weights and distinct rows (``random_network``): the checkpoint the command-level tests use."""
    from stylenet.checkpoints.format import export_inference_checkpoint
    from stylenet.nn.network import random_network

    export_inference_checkpoint(random_network(len(names), seed=seed), names, path, **export_kw)
    return path


def make_photo(
    path: Path, size: tuple[int, int] = (80, 64), seed: int = 0, mode: str = "RGB"
) -> Path:
    """A smooth random-ish image (gradients + blobs), saved in ``mode``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    arr = (
        np.stack([np.sin(xx * rng.uniform(2, 8) + rng.uniform(0, 6)) for _ in range(3)], axis=-1)
        * 0.5
        + 0.5
    )
    arr = arr * 0.7 + rng.uniform(0, 0.3, size=(h, w, 3))
    img = Image.fromarray((arr * 255).clip(0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    for i in range(6):
        make_photo(d / f"p{i}.png", (72 + 4 * i, 64), seed=i)
    make_photo(d / "sub" / "nested.jpg", (70, 70), seed=99)
    return d


@pytest.fixture
def tiny_overrides(photo_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "name=test",
        f"data.root={photo_dir}",
        "data.image_size=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "model=narrow",
        "model.base_channels=8",
        "model.num_res_blocks=1",
        "loss.vgg.weights=random",
        "style_size=48",
        "samples.size=32",
        "samples.num_photos=2",
        "samples.every_n_steps=3",
        "checkpoint_every_n_steps=2",
        "trainer.max_steps=4",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"export.dir={tmp_path / 'exported'}",
        f"+run_dir={tmp_path / 'run'}",
    ]


@pytest.fixture
def compose():
    """Compose a config of ``configs/`` as a run would. With ``hydra=True`` the Hydra node is
    set too, so ``${hydra:...}`` interpolations (the run name) resolve as in a real run."""
    from stylenet.runtime.hydra import compose_config, resolved_run_config

    def _compose(overrides: list[str], config_name: str = "train", hydra: bool = False):
        if hydra:
            return resolved_run_config(config_name, overrides)
        return compose_config(config_name, overrides)

    return _compose
