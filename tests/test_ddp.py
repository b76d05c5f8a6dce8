"""Multi-process training on Lightning's DDP (two CPU processes, gloo): each rank draws its own
crops and styles, only rank 0 exports and writes sample grids, and a resumed run continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import make_photo

HERE = Path(__file__).resolve().parent


def _same_size_photos(d: Path) -> Path:
    # One size for all: the crop sampler then consumes the same amount of randomness on every
    # rank, so only a per-rank seed (not the luck of different photo sizes) separates the draws.
    for i in range(8):
        make_photo(d / f"p{i}.png", (64, 64), seed=i)
    return d


def _run(tmp_path, photo_dir, steps, record):
    record.mkdir(exist_ok=True)
    args = [
        sys.executable, str(HERE / "ddp" / "record_ranks.py"),
        "name=ddp", "style=[starry_night,the_scream,night_cafe]", f"data.root={photo_dir}",
        "data.image_size=32", "data.batch_size=2", "data.num_workers=0", "model.base_channels=8",
        "model.num_res_blocks=1", "loss.vgg.weights=random", "style_size=48", "samples.size=32",
        "samples.num_photos=2", "samples.every_n_steps=2", "checkpoint_every_n_steps=2",
        f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
        f"export.dir={tmp_path / 'exp'}", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    env = {**os.environ, "STYLENET_FORCE_CPU": "1", "STYLENET_OFFLINE": "1",
           "RECORD_DIR": str(record), "PYTHONPATH": str(HERE.parent)}  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [json.loads((record / f"rank{i}.json").read_text()) for i in range(2)]


def test_ddp_two_ranks_draw_differently_and_rank0_exports(tmp_path):
    photo_dir = _same_size_photos(tmp_path / "photos")
    r0, r1 = _run(tmp_path, photo_dir, 6, tmp_path / "rec1")
    assert r0["world"] == r1["world"] == 2
    assert r0["rows"] != r1["rows"]  # different style indices per rank
    assert r0["crops"] != r1["crops"]  # different photos and crops per rank
    exported = sorted((tmp_path / "exp").iterdir())
    assert [p.name for p in exported] == ["ddp.pt"]  # one export, by rank 0
    grids = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert grids and len(grids) == len({g.name for g in grids})
    assert torch.load(exported[0], weights_only=True)["trained_steps"] == 6
    # resume: the same command with more steps continues from step 6
    _run(tmp_path, photo_dir, 8, tmp_path / "rec2")
    assert torch.load(tmp_path / "exp" / "ddp.pt", weights_only=True)["trained_steps"] == 8
