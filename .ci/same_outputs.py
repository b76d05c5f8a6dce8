"""Run the main commands of a source tree and fingerprint everything they write.

    python .ci/same_outputs.py --tree /path/to/old/checkout --out /tmp/before.json
    python .ci/same_outputs.py --tree . --out /tmp/after.json
    python .ci/same_outputs.py --compare /tmp/before.json /tmp/after.json

Used to show that a change of layout changes no behaviour: the same command on the same input
must give the same files. Every command runs as ``python -m stylenet <command>`` with a copy of the
tree's package (its configs inside it) first on ``sys.path``, so an older checkout can be measured
with the same interpreter and nothing of an installed stylenet is used. Inputs are
made here from a seed (photos, a short clip), the shipped ``checkpoints/bank_all.pt`` is the
network, and the real VGG16 weights are needed (``stylenet-weights``).

Fingerprints: images, videos, ONNX and safetensors files by their bytes; checkpoints by their
tensors and their metadata without the times they were written (``created`` and the ``when`` of
history entries), whole and entry by entry (``trained.pt [state_dict]``, ``[train_config]``...); TorchScript files by the output they give on a fixed input (their bytes hold
the Python module path of the class, which a move of the module changes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Differ from run to run of one tree: the times files were written, the run's random id, and
# the sha256 of a base checkpoint (its bytes hold that id).
TIME_KEYS = {"created", "when", "date", "run_id", "base_sha256"}
# Paths are recorded in configs and summaries: every run works in this one folder.
WORK = Path(tempfile.gettempdir()) / "stylenet-same-outputs"


def _photos(folder: Path, n: int = 3, seed: int = 0) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 72 + 8 * i, 96
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
        p = folder / f"photo{i}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


def _clip(path: Path, frames: int = 6) -> None:
    import imageio_ffmpeg
    import numpy as np

    w, h = 96, 64
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=10, codec="libx264",
                                         macro_block_size=1, output_params=["-threads", "1"])  # fmt: skip
    writer.send(None)
    for t in range(frames):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx + 4 * t) % 256, yy * 3 % 256, (xx * yy) % 256], axis=-1)
        writer.send(np.ascontiguousarray(img.astype("uint8")))
    writer.close()


def _clean(obj):  # noqa: ANN001, ANN202
    import torch

    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in sorted(obj.items()) if k not in TIME_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        t = obj.detach().contiguous().cpu()
        return f"tensor{tuple(t.shape)}:{t.dtype}:{hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]}"
    if isinstance(obj, bytes):
        return "bytes:" + hashlib.sha256(obj).hexdigest()[:16]
    return obj


def fingerprint(path: Path) -> str:
    import torch

    if path.suffix in (".pt", ".ckpt") and "torchscript" not in path.name:
        data = _clean(torch.load(path, map_location="cpu", weights_only=True))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    if "torchscript" in path.name:
        m = torch.jit.load(str(path), map_location="cpu")
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, 64, 64, generator=g)
        w = torch.zeros(1, 10)
        w[0, 0] = 1.0
        with torch.no_grad():
            y = m(x, w)
        return "output:" + hashlib.sha256(y.numpy().tobytes()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_parts(path: Path, name: str) -> dict[str, str]:
    """A checkpoint's weights and each of its other top-level entries, fingerprinted apart, so a
    difference names the entry it is in."""
    import torch

    data = _clean(torch.load(path, map_location="cpu", weights_only=True))
    return {
        f"{name} [{k}]": hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()
        for k, v in data.items()
    }


def recorded_config(path: Path) -> dict[str, str]:
    """The training config a checkpoint records, flattened to ``{"a.b.c": value}``."""
    import torch

    flat: dict[str, str] = {}

    def walk(prefix: str, v) -> None:  # noqa: ANN001
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            flat[prefix] = json.dumps(v, sort_keys=True)

    walk("", torch.load(path, map_location="cpu", weights_only=True).get("train_config") or {})
    return flat


def run_tree(tree: Path, work: Path) -> dict[str, str]:
    tree = tree.resolve()
    # The tree's package with its own configs inside it, first on the path: an installed
    # stylenet (editable or not) supplies neither the code nor the configs of the run.
    site = work / "site"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(tree / "stylenet", site / "stylenet", ignore=skip)
    shutil.copytree(tree / "configs", site / "stylenet" / "configs", ignore=skip)
    env = dict(os.environ, PYTHONPATH=str(site), CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import stylenet, stylenet.configs as c; print(stylenet.__file__, c.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
    ).stdout.split()
    if not all(w.startswith(str(site)) for w in where):
        raise SystemExit(f"the run would not use the tree's code and configs: {where}")
    bank = Path(__file__).resolve().parent.parent / "checkpoints" / "bank_all.pt"
    photos = _photos(work / "photos")
    train_photos = _photos(work / "train", n=4, seed=1)
    clip = work / "clip.mp4"
    _clip(clip)
    out = work / "out"
    out.mkdir()
    log: list[str] = []

    def sn(*args: str) -> None:
        cmd = [sys.executable, "-m", "stylenet", *map(str, args)]
        log.append(" ".join(cmd[2:]))
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    c = ["-c", bank]
    sn("stylize", *c, "-i", photos[0], "-o", out / "one.png", "-s", "starry_night")
    sn("stylize", *c, "-i", photos[0], "-o", out / "mix.jpg",
       "-s", "starry_night=0.6,the_scream=0.4", "--strength", "0.7", "--preserve-color")  # fmt: skip
    sn("stylize", *c, "-i", photos[1], "-o", out / "tiled.png", "--tile", "48",
       "--tile-overlap", "8", "-s", "2")  # fmt: skip
    sn("stylize", *c, "-i", photos[2], "-o", out / "stroke.png", "--stroke-scale", "2")
    sn("stylize", *c, "-i", work / "photos", "-o", str(out / "folder") + "/", "--batch-size", "2")
    sn("stylize", *c, "-i", clip, "-o", out / "clip.mp4", "--temporal", "0.8")
    sn("bank", "rename", bank, "the_scream", "scream", "-o", out / "renamed.pt")
    sn("bank", "remove", out / "renamed.pt", "night_cafe", "-o", out / "removed.pt")
    sn("bank", "thumbnail", bank, "starry_night", "-o", out / "thumb.jpg")
    sn("export", *c, "-f", "onnx", "-o", out / "bank.onnx")
    sn("export", *c, "-f", "safetensors", "-o", out / "bank.safetensors")
    sn("export", *c, "-f", "torchscript", "-o", out / "bank.torchscript.pt")
    sn("optimize", f"content={photos[0]}", "style=starry_night", "size=48", "steps=4",
       f"hydra.run.dir={out / 'optimize'}")  # fmt: skip
    tiny = [f"data.root={work / 'train'}", "data.image_size=32", "data.batch_size=2", "data.num_workers=0",
            "model.base_channels=8", "model.num_res_blocks=1", "style_size=48",
            "trainer.max_steps=3", "trainer.enable_progress_bar=false", "samples.every_n_steps=0",
            f"export.dir={out}", f"hydra.run.dir={work / 'runs'}"]  # fmt: skip
    sn("train", "name=trained", "style=[starry_night,the_scream]", *tiny)
    sn("train", "name=grown", "style=mosaic", f"finetune.from={out / 'trained.pt'}", *tiny[:-1],
       f"hydra.run.dir={work / 'runs-grow'}")  # fmt: skip
    del train_photos
    prints: dict = {}
    configs: dict = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and not p.name.endswith((".yaml", ".log")) and "tfevents" not in p.name:
            name = str(p.relative_to(out))
            prints[name] = fingerprint(p)
            if p.suffix == ".pt" and "torchscript" not in p.name:
                prints.update(checkpoint_parts(p, name))
                configs[name] = recorded_config(p)
    prints["__commands__"] = log  # type: ignore[assignment]
    prints["__configs__"] = configs  # type: ignore[assignment]
    return prints


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, help="source tree whose commands are run")
    ap.add_argument("--out", type=Path, help="fingerprints (JSON) to write")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--keep", action="store_true", help=f"keep the inputs and outputs ({WORK})")
    a = ap.parse_args()
    if a.compare:
        before, after = (json.loads(p.read_text()) for p in a.compare)
        keys = sorted((set(before) | set(after)) - {"__commands__", "__configs__"})
        same = [k for k in keys if before.get(k) == after.get(k)]
        for k in keys:
            print(f"{'same' if k in same else 'DIFFERENT':9} {k}")
        print(f"{len(same)} of {len(keys)} outputs identical")
        bc, ac = before.get("__configs__", {}), after.get("__configs__", {})
        for name in sorted(set(bc) & set(ac)):
            b, c = bc[name], ac[name]
            for k in sorted(set(b) | set(c)):
                if b.get(k) != c.get(k):
                    print(
                        f"  {name} train_config {k}: {b.get(k, '(absent)')} -> {c.get(k, '(absent)')}"
                    )
        raise SystemExit(0 if len(same) == len(keys) else 1)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    try:
        prints = run_tree(a.tree, WORK)
    finally:
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    a.out.write_text(json.dumps(prints, indent=1) + "\n")
    print(f"{len(prints) - 1} outputs fingerprinted -> {a.out}")


if __name__ == "__main__":
    main()
