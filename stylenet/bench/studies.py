"""Studies: measurements that chose a default, each written as a results file that
BENCHMARKS.md renders (``bench/studies/<name>.json``), never typed into a document by hand.

A study file holds its title, the commands that made it, one or more tables of measured rows,
prose that reads the tables, and where the rows came from (``provenance``: a run of
``stylenet-bench --study NAME`` on a named machine, or, for runs made before this format existed,
a transcription of their reports, said as such). ``stylenet-bench --study NAME`` re-measures
the studies that this module can run:

- ``flicker``: temporal smoothing strengths on the sample clip, a still-camera clip and a pan;
- ``jpeg``: the evaluation loss of one network's outputs saved as PNG, 4:4:4 JPEG and 4:2:0 JPEG;
- ``checkerboard-tiny``: nearest against bilinear upsampling in the quality test's tiny run;
- ``memory``: peak memory of one forward pass per pixel and channel (``stylenet.inference.memory``);
- ``train-compile``: training steps per second with and without ``speed.compile``;
- ``fast-candidates``: the layouts tried for ``model=fast``, timed and distilled
  (``stylenet.bench.fast``);
- ``onnx-instance-norm``: the ONNX files with the native InstanceNormalization op against the
  explicit mean/variance form, in onnxruntime, beside the peer's network;
- ``palette``: the painting's palette (``stylenet.inference.palette``) moving every pixel or only
  the broad colour areas at three scales, scored by both measures; and what it costs per image.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from stylenet.runtime.machine import environment

STUDIES = ("flicker", "jpeg", "checkerboard-tiny", "memory", "train-compile", "fast-candidates",
           "onnx-instance-norm", "palette")  # fmt: skip


def study(
    name: str, title: str, summary: str, tables: list[dict[str, Any]], *, commands: Sequence[str],
    notes: Sequence[str] = (), provenance: str = "",
) -> dict[str, Any]:  # fmt: skip
    """A study file's contents. Each table: ``caption``, ``columns`` ([key, header, format]),
    ``rows`` (dicts)."""
    return {
        "study": name, "title": title, "summary": summary, "commands": list(commands),
        "tables": tables, "notes": list(notes), "env": environment(),
        "provenance": provenance or f"measured by `stylenet-bench --study {name}`",
    }  # fmt: skip


def write_study(data: dict[str, Any], out_dir: Path) -> Path:
    from stylenet.io.files import write_text

    return write_text(out_dir / f"{data['study']}.json", json.dumps(data, indent=2) + "\n")


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and fmt:
        return format(value, fmt)
    return str(value)


def render_study(data: dict[str, Any]) -> str:
    """The markdown section of one study file."""
    lines = [f"## {data['title']}", "", data["summary"].strip(), ""]
    if data.get("commands"):
        lines += ["    " + c for c in data["commands"]]
        lines.append("")
    for t in data["tables"]:
        if t.get("caption"):
            lines += [t["caption"].strip(), ""]
        cols = t["columns"]
        lines.append("| " + " | ".join(c[1] for c in cols) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|")
        for r in t["rows"]:
            cells = [_cell(r.get(c[0]), c[2] if len(c) > 2 else "") for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for n in data.get("notes", []):
        lines += [n.strip(), ""]
    env = data.get("env") or {}
    where = f"{env.get('cpu', '?')}, {env.get('cpu_threads', '?')} threads, torch {env.get('torch', '?')}"
    lines.append(f"Provenance: {data['provenance']} ({where}, {env.get('date', '')[:10]}).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- measured studies


def flicker_study(checkpoint: str, video: str, style: str = "starry_night", size: int = 256,
                  strengths: Sequence[float] = (0.0, 0.5, 0.8)) -> dict[str, Any]:  # fmt: skip
    """Flicker of three clips at several temporal-smoothing strengths (``stylenet.inference.temporal``)."""
    from stylenet.evaluation.flicker import (
        flicker_figures,
        pan_clip,
        read_clip,
        still_camera_clip,
        stylize_clip,
    )
    from stylenet.inference.stylizer import Stylizer
    from stylenet.io.images import image_to_tensor, load_image, resize_long
    from stylenet.io.paths import SAMPLE_CONTENT_DIR

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    sample = read_clip(Path(video), size)
    photos = sorted(SAMPLE_CONTENT_DIR.glob("*.jpg"))
    bg = resize_long(image_to_tensor(load_image(photos[0]))[None], size).clamp(0, 1)
    subject = resize_long(image_to_tensor(load_image(photos[1]))[None], size // 3).clamp(0, 1)
    still = still_camera_clip(bg, subject)
    wide = resize_long(image_to_tensor(load_image(photos[2]))[None], 2 * size).clamp(0, 1)
    pan = pan_clip(wide, size=(min(192, wide.shape[-2]), min(256, wide.shape[-1] - 90)))
    clips = [(f"the sample clip (`{Path(video).name}`, static camera, pedestrians)", sample, "ratio"),
             ("still camera, moving subject, sensor noise (`still_camera_clip`)", still, "ratio"),
             ("pan, 3 px per frame (`pan_clip`): warped temporal error", pan, "warped"),
             ("pan: frame-difference ratio (the texture moves with the scene)", pan, "ratio")]  # fmt: skip
    # The painting's palette is matched on each frame's own colours: these columns show whether
    # that adds flicker (without smoothing, and at the default strength).
    palette_runs = (0.0, strengths[-1])
    rows = []
    for label, frames, measure in clips:
        row: dict[str, Any] = {"clip": label, "frames": len(frames)}
        runs = [(f"t{s:g}", s, 0.0) for s in strengths]
        runs += [(f"p1_t{s:g}", s, 1.0) for s in palette_runs]
        for key, s, pal in runs:
            f = flicker_figures(frames, stylize_clip(st, frames, style, s, pal))
            row[key] = f["flicker_ratio"] if measure == "ratio" else f["temporal_error"]
        rows.append(row)
    cols = (
        [["clip", "clip"], ["frames", "frames"]]
        + [[f"t{s:g}", f"temporal {s:g}", ".2f"] for s in strengths]
        + [[f"p1_t{s:g}", f"--palette 1, temporal {s:g}", ".2f"] for s in palette_runs]
    )
    return study(
        "flicker", "Video flicker",
        "Frame-difference ratio (mean absolute change between consecutive output frames / the "
        "same for the input; 1.0: the output changes as much as the video) and, for the pan, the "
        "error after aligning consecutive outputs by the camera's shift (0..255 units). "
        f"`{Path(checkpoint).name}`, {style}, {size} px, `--temporal` at each strength "
        "(`stylenet.inference.temporal.TemporalSmoother`: each frame blended with the previous output, "
        "aligned to the pan, where the input did not change); the last columns with the "
        "painting's palette (`--palette 1`, matched on each frame).",
        [{"caption": "", "columns": cols, "rows": rows}],
        commands=[f"stylenet-bench --study flicker --checkpoint {checkpoint} --video {video}"],
        notes=flicker_notes(rows),
    )  # fmt: skip


FLICKER_GOAL = 1.15  # frame-difference ratio a still-camera clip should reach


def flicker_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the flicker rows say about the default strength, read from the rows themselves."""
    from stylenet.inference.temporal import DEFAULT_STRENGTH

    key = f"t{DEFAULT_STRENGTH:g}"
    still = [r for r in rows[:2] if r.get(key) is not None]
    met = [r["clip"] for r in still if r[key] <= FLICKER_GOAL]
    missed = [f"{r['clip']}: {r[key]:.2f}" for r in still if r[key] > FLICKER_GOAL]
    text = (f"At the default strength of `stylenet-stylize` for videos ({DEFAULT_STRENGTH:g}, "
            f"`stylenet.inference.temporal.DEFAULT_STRENGTH`) the goal of {FLICKER_GOAL} is met on "
            f"{len(met)} of the {len(still)} still-camera clips")  # fmt: skip
    text += f"; not on {'; '.join(missed)}." if missed else "."
    return [text, "A stability term in training (Gupta et al. 2017) was not tried."]


def jpeg_study(checkpoint: str, content_dir: str, photos: Sequence[str] | None = None,
               style: str = "starry_night", size: int = 512, quality: int = 95) -> dict[str, Any]:  # fmt: skip
    """One network's outputs saved three ways and scored with the evaluation loss."""
    from PIL import Image

    from stylenet.data.styles import resolve_style_image
    from stylenet.evaluation.harness import load_photos
    from stylenet.evaluation.loss import build_eval_loss, eval_terms
    from stylenet.evaluation.measures import checkerboard_score
    from stylenet.inference.stylizer import StylizeOptions, Stylizer
    from stylenet.io.images import image_to_tensor, load_image, resize_long, tensor_to_image

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    loss = build_eval_loss().to(st.device)
    pics = load_photos(Path(content_dir), size, names=photos)
    style_img = resize_long(image_to_tensor(load_image(resolve_style_image(style)))[None], size)
    grams = loss.style_grams(style_img.clamp(0, 1).to(st.device))
    ways = [("PNG (lossless)", "PNG", {}),
            (f"JPEG q{quality}, 4:4:4 chroma (what stylenet writes)", "JPEG",
             {"quality": quality, "subsampling": 0}),
            (f"JPEG q{quality}, 4:2:0 chroma (Pillow's default)", "JPEG",
             {"quality": quality, "subsampling": 2})]  # fmt: skip
    acc = {w[0]: {"loss": 0.0, "checker": 0.0} for w in ways}
    for _, photo in pics:
        y = st.stylize_tensor(photo, StylizeOptions(style=style, max_size=0))
        img = tensor_to_image(y)
        for label, fmt, kw in ways:
            buf = io.BytesIO()
            img.save(buf, format=fmt, **kw)
            z = image_to_tensor(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))[None]
            t = eval_terms(loss, z.to(st.device), photo.to(st.device), grams)
            acc[label]["loss"] += t["loss"] / len(pics)
            acc[label]["checker"] += checkerboard_score(z, photo) / len(pics)
    png = acc[ways[0][0]]["loss"]
    rows = [{"saved as": k, "loss": v["loss"], "ratio": v["loss"] / png, "checker": v["checker"]}
            for k, v in acc.items()]  # fmt: skip
    return study(
        "jpeg", "JPEG chroma",
        f"The same outputs of `{Path(checkpoint).name}` ({style}, {size} px, {len(pics)} photos) "
        "saved three ways and read back, scored with the fixed evaluation loss (lower is better) "
        "and the 2-px checkerboard score (1.0: no more periodic energy than the photo). 4:2:0 "
        "chroma subsampling halves the colour resolution; the painted texture lives largely in "
        "colour, so every JPEG stylenet writes is 4:4:4.",
        [{"caption": "", "rows": rows,
          "columns": [["saved as", "saved as"], ["loss", "evaluation loss", ".4g"],
                      ["ratio", "loss / PNG's", ".3f"], ["checker", "checker 2px", ".2f"]]}],
        commands=[f"stylenet-bench --study jpeg --checkpoint {checkpoint} --content-dir {content_dir}"],
    )  # fmt: skip


def tiny_checkerboard(upsample: str, steps: int = 60, seed: int = 0) -> list[float]:
    """The quality test's tiny run (tests/test_quality.py): a 16-channel network trained
    ``steps`` steps on the sample photos with random VGG weights; its 2-px checkerboard score on
    two photos it did not see."""
    import random

    from stylenet.evaluation.measures import checkerboard_score
    from stylenet.io.images import image_to_tensor, load_image, resize_long
    from stylenet.io.paths import SAMPLE_CONTENT_DIR, STYLE_DIR
    from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
    from stylenet.nn.network import TransformerNet
    from stylenet.nn.vgg import DEFAULT_STYLE_LAYERS

    torch.manual_seed(seed)
    random.seed(seed)
    size = 64
    files = sorted(SAMPLE_CONTENT_DIR.glob("*.jpg"))
    photos = [resize_long(image_to_tensor(load_image(p))[None], 3 * size) for p in files]
    held_out, train = photos[:2], photos[4:]
    style = resize_long(image_to_tensor(load_image(STYLE_DIR / "cafe_terrace.jpg"))[None], 128)
    loss_fn = PerceptualLoss(VGGFeatures(DEFAULT_STYLE_LAYERS, weights="random"), style_weight=1e10)
    loss_fn.set_style_targets([style])
    net = TransformerNet(1, 16, 2, upsample=upsample)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    idx = torch.zeros(4, dtype=torch.long)
    for _ in range(steps):
        crops = []
        for _ in range(4):
            p = random.choice(train)
            i = random.randint(0, p.shape[-2] - size)
            j = random.randint(0, p.shape[-1] - size)
            crops.append(p[..., i : i + size, j : j + size])
        x = torch.cat(crops)
        loss = loss_fn(net(x, net.one_hot(idx)), x, idx)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return [checkerboard_score(net(p, net.one_hot(0)).clamp(0, 1), p) for p in held_out]


def checkerboard_tiny_study() -> dict[str, Any]:
    rows = []
    for up in ("nearest", "bilinear"):
        s = tiny_checkerboard(up)
        rows.append({"upsample": up, "photo 1": s[0], "photo 2": s[1], "max": max(s)})
    return study(
        "checkerboard-tiny", "Checkerboard in the quality test's tiny run",
        "The run of `tests/test_quality.py` (a 16-channel network, 60 steps on the sample photos, "
        "random VGG weights, the cafe_terrace painting) with each upsampling: 2-px checkerboard "
        "score on two photos it did not see (1.0: no more than the photo). The test asserts the "
        "bilinear network stays below 1.2 and the nearest one does not.",
        [{"caption": "", "rows": rows,
          "columns": [["upsample", "model.upsample"], ["photo 1", "photo 1", ".2f"],
                      ["photo 2", "photo 2", ".2f"], ["max", "max", ".2f"]]}],
        commands=["stylenet-bench --study checkerboard-tiny"],
    )  # fmt: skip


_MEMORY_PROBE = """
import sys, torch
from stylenet.nn.network import TransformerNet
c, side, dtype, cl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
torch.set_num_threads(2)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
net = TransformerNet(1, c, 5).eval().to(dt)
x = torch.rand(1, 3, side, side).to(dt)
mix = torch.ones(1, 1)
if cl:
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    net.core(x[..., :64, :64], mix)  # allocator and kernels warmed on a small input
    before = hwm()
    net.core(x, mix)
print(hwm() - before)
"""


def memory_study(sides: Sequence[int] = (512, 1024, 2048)) -> dict[str, Any]:
    """Peak resident memory of one forward pass per pixel and base channel, each in a fresh
    process (``VmHWM`` before and after one ``net.core`` call): the coefficients of
    ``stylenet.inference.memory``."""
    import subprocess
    import sys

    from stylenet.runtime.device import cpu_bf16_fast

    rows = []
    settings = [("fp32", True), ("fp32", False), ("bf16", True)]
    for dtype, cl in settings:
        for c, label in ((32, "full"), (16, "narrow")):
            row: dict[str, Any] = {
                "setting": f"{label}, {dtype}, {'channels_last' if cl else 'NCHW'}"
            }
            for side in sides:
                r = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(c), str(side), dtype,
                                    "1" if cl else "0"], capture_output=True, text=True,
                                   timeout=600)  # fmt: skip
                grew = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
                row[str(side)] = grew / (side * side * c) if grew is not None else None
            rows.append(row)
    cols = [["setting", "model, precision, layout"]] + [[str(s), f"{s} px", ".1f"] for s in sides]
    return study(
        "memory", "Memory of one forward pass",
        "Peak resident memory that one forward pass adds, in bytes per pixel per base channel "
        "(the network's `base_channels`), measured in a fresh process per cell (`VmHWM` before "
        "and after one `net.core` call on a square image, 2 threads). `stylenet.inference.memory` budgets "
        f"with a figure at or above the largest of its row. This CPU {'has' if cpu_bf16_fast() else 'lacks'} "
        "AMX, which decides whether bf16 runs in oneDNN's kernels or an emulated path.",
        [{"caption": "", "columns": cols, "rows": rows}],
        commands=["stylenet-bench --study memory"],
    )  # fmt: skip


def train_compile_study(steps: int = 60, warm: int = 10) -> dict[str, Any]:
    """Training steps per second on this machine with ``speed.compile`` off and on (the CPU
    default recipe's crop and batch, random VGG weights: the speed, not the result, is measured),
    and the time the compiled run spent before its first step."""
    import tempfile

    from pytorch_lightning.callbacks import Callback

    from stylenet.runtime.hydra import compose_config
    from stylenet.training.run import train

    class Clock(Callback):
        def __init__(self) -> None:
            self.t: dict[int, float] = {}
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, *a) -> None:  # noqa: ANN001
            self.t[int(trainer.global_step)] = time.perf_counter()

    rows = []
    for mode in ("off", "on"):
        with tempfile.TemporaryDirectory() as d:
            ov = ["style=starry_night", "name=study", f"+run_dir={d}/run", f"export.dir={d}/exp",
                  f"trainer.max_steps={steps}", "samples.every_n_steps=0",
                  "checkpoint_every_n_steps=100000", "trainer.enable_progress_bar=false",
                  "loss.vgg.weights=random", f"speed.compile={mode}"]  # fmt: skip
            cfg = compose_config("train", ov)
            clock = Clock()
            train(cfg, extra_callbacks=[clock])
        rate = (steps - warm) / (clock.t[steps] - clock.t[warm])
        rows.append({"compile": mode, "steps_per_s": rate,
                     "first_step_s": clock.t[1] - clock.start,
                     "crop": int(cfg.data.image_size), "batch": int(cfg.data.batch_size)})  # fmt: skip
    return study(
        "train-compile", "Compiling the training step on a CPU",
        f"Steps per second of `stylenet-train` with `speed.compile` off and on, timed over steps "
        f"{warm}..{steps} of one run each, and the seconds from the start of the run to the end "
        "of its first step (compilation included). `speed.compile=auto` compiles on CUDA only.",
        [{"caption": "", "rows": rows,
          "columns": [["compile", "speed.compile"], ["crop", "crop"], ["batch", "batch"],
                      ["steps_per_s", "steps / s", ".3f"], ["first_step_s", "first step, s", ".0f"]]}],
        commands=["stylenet-bench --study train-compile"],
    )  # fmt: skip


def onnx_norm_study(
    networks: dict[str, str | None], sizes: Sequence[int] = (512, 1024), rounds: int = 11
) -> dict[str, Any]:
    """Each network (label -> checkpoint, or None for a random network of that layout) exported
    twice, with the native InstanceNormalization op and with the explicit form, and timed in
    onnxruntime on as many threads as torch uses. The two files and the peer's network run in
    turn, ``rounds`` times per size, so a slow spell of a shared machine falls on all three."""
    import tempfile

    import numpy as np

    from stylenet.bench.inference import _variant, fast_layout, peer_model_path
    from stylenet.checkpoints.export import export_onnx, onnx_session, run_onnx

    layouts = {"fast": fast_layout(), "full": {}}
    threads = torch.get_num_threads()
    peer = peer_model_path()
    peer_sess = onnx_session(peer, threads=threads) if peer is not None else None
    rows = []
    for label, ckpt in networks.items():
        net = _variant(ckpt, layouts[label])
        with tempfile.TemporaryDirectory() as d:
            sess = {
                form: onnx_session(export_onnx(net, Path(d) / f"{form}.onnx", native_norm=native),
                                   threads=threads)
                for form, native in (("explicit", False), ("native", True))
            }  # fmt: skip
            for s in sizes:
                x = np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32)
                w = np.eye(net.num_styles, dtype=np.float32)[:1]
                runs: dict[str, Callable[[], Any]] = {
                    form: (lambda se=se, x=x, w=w: run_onnx(se, x, w)) for form, se in sess.items()
                }
                if peer_sess is not None:
                    pw = np.eye(26, dtype=np.float32)[0]
                    feed = {"image": x, "style_weights": pw}
                    runs["peer"] = lambda feed=feed: peer_sess.run(None, feed)
                diff = float(np.abs(runs["native"]() - runs["explicit"]()).max())
                for fn in runs.values():
                    fn()  # warm-up
                times: dict[str, list[float]] = {k: [] for k in runs}
                for _ in range(rounds):
                    for k, fn in runs.items():
                        t0 = time.perf_counter()
                        fn()
                        times[k].append((time.perf_counter() - t0) * 1000.0)
                med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
                rows.append({
                    "network": label, "checkpoint": ckpt or "random", "size": s,
                    "explicit_ms": med["explicit"], "native_ms": med["native"],
                    "peer_ms": med.get("peer"), "max_abs_diff": diff,
                })  # fmt: skip
    return onnx_norm_document(rows, threads)


def onnx_norm_document(rows: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """The onnx-instance-norm study file around its measured rows (ratios derived here)."""
    for r in rows:
        r["speedup"] = r["explicit_ms"] / r["native_ms"]
        r["peer_over_explicit"] = r["peer_ms"] / r["explicit_ms"] if r.get("peer_ms") else None
    cols = [["network", "network"], ["size", "px"], ["explicit_ms", "explicit, ms", ".0f"],
            ["native_ms", "native op, ms", ".0f"], ["speedup", "explicit / native", ".2f"],
            ["peer_ms", "peer, ms", ".0f"], ["peer_over_explicit", "peer / explicit", ".2f"],
            ["max_abs_diff", "largest difference", ".1e"]]  # fmt: skip
    fast = {r["size"]: r for r in rows if r["network"] == "fast"}
    notes = []
    if fast:
        spans = ", ".join(f"{r['speedup']:.2f} at {s} px" for s, r in sorted(fast.items()))
        notes.append(
            f"Explicit / native for the fast network: {spans}; a ratio above 1 means the native op "
            "was faster. The export keeps the explicit form: over the runs that decided it, the "
            "native op was not faster at every size (see ConditionalInstanceNorm2d._onnx_forward)."
        )  # fmt: skip
    return study(
        "onnx-instance-norm", "ONNX: the native InstanceNormalization op",
        f"Median ms per image in onnxruntime (fp32, one image, {threads} threads) of one network "
        "exported two ways. *Explicit* is what `stylenet-export -f onnx` writes: the norms as the "
        "mean/variance ops the network computes in torch (ReduceMean, Sub, ReduceL2, Mul, Add). "
        "*Native* is ONNX's InstanceNormalization op followed by the mixed gamma/beta "
        "(`export_onnx(native_norm=True)`). The peer's network ran in the same rounds, each of "
        "the three in turn. The last column is the largest difference between the two files' "
        "outputs (pixels in [0, 1]).",
        [{"caption": "", "columns": cols, "rows": rows}],
        commands=["stylenet-bench --study onnx-instance-norm --checkpoint checkpoints/bank_all.pt "
                  "--fast-checkpoint checkpoints/bank_all-fast.pt"],
        notes=notes,
    )  # fmt: skip


# The palette study's styles: four of the bank's paintings (The Scream: the pale one) and, through
# the checkpoint's predictor when it has one, the project's mosaic (a painting it never saw).
PALETTE_STYLES = ("the_scream", "starry_night", "church_at_auvers", "night_cafe")
PALETTE_VARIANTS = (("every pixel", 0, 1.0), ("areas 1/16", 16, 1.0), ("areas 1/32", 32, 1.0),
                    ("areas 1/64", 64, 1.0), ("areas 1/32, amount 0.5", 32, 0.5))  # fmt: skip


def palette_study(
    checkpoint: str, content_dir: str, photos: Sequence[str] | None = None, size: int = 512,
    max_photos: int = 4, timing: dict[str, str] | None = None, rounds: int = 5,
) -> dict[str, Any]:  # fmt: skip
    """Each variant of the palette against none, on the same network outputs, by our evaluation
    loss and the peer setup's two distances (``stylenet.evaluation.arbitrary``); then ms per
    image with and without the palette for each network of ``timing`` at 512 and 1024 px."""
    import math
    import statistics

    from stylenet.data.styles import resolve_style_image
    from stylenet.evaluation.arbitrary import PeerSetupMeasure
    from stylenet.evaluation.harness import load_photos
    from stylenet.evaluation.loss import build_eval_loss, eval_terms
    from stylenet.inference.palette import match
    from stylenet.inference.stylizer import StylizeOptions, Stylizer
    from stylenet.io.images import image_to_tensor, load_image, resize_long
    from stylenet.io.paths import STYLE_DIR

    st = Stylizer(checkpoint, precision="fp32", compile="off")
    loss = build_eval_loss().to(st.device)
    peer = PeerSetupMeasure().to(st.device)
    pics = load_photos(Path(content_dir), size, max_photos, photos)
    styles = {n: (n, resolve_style_image(n)) for n in PALETTE_STYLES if n in st.style_names}
    if st.has_predictor:
        mosaic = STYLE_DIR / "mosaic.jpg"
        styles["mosaic (style image)"] = (str(mosaic), mosaic)
    keys = ("loss", "peer_setup_gram", "peer_setup_meanstd")
    rows, ratios = [], {v[0]: [] for v in PALETTE_VARIANTS}
    for name, (spec, path) in styles.items():
        art = resize_long(image_to_tensor(load_image(path))[None], size).clamp(0, 1).to(st.device)
        grams, ptargets = loss.style_grams(art), peer.targets(art)
        target = st.palette_target(spec)
        sums = {v[0]: dict.fromkeys(keys, 0.0) for v in (("none",), *PALETTE_VARIANTS)}
        for _, photo in pics:
            y = st.stylize_tensor(photo, StylizeOptions(style=spec, max_size=0))
            outs = {"none": y, **{label: match(y, target, amount, cells)
                                  for label, cells, amount in PALETTE_VARIANTS}}  # fmt: skip
            for label, yk in outs.items():
                yd = yk.to(st.device)
                t = eval_terms(loss, yd, photo.to(st.device), grams)
                t.update(peer.distances(yd, ptargets))
                for k in keys:
                    sums[label][k] += t[k] / len(pics)
        for label, *_ in PALETTE_VARIANTS:
            r = {k: sums[label][k] / sums["none"][k] for k in keys}
            ratios[label].append(r)
            rows.append({"style": name, "variant": label, **r})
    for label, rs in ratios.items():
        geo = {k: math.exp(statistics.fmean(math.log(r[k]) for r in rs)) for k in keys}
        rows.append({"style": "geometric mean", "variant": label, **geo})
    tables = [{"caption": f"Ratios to the same outputs without the palette (below 1: closer to the "
                          f"painting by that measure), `{Path(checkpoint).name}`, {len(pics)} "
                          f"photos at {size} px.",
               "columns": [["style", "style"], ["variant", "palette"],
                           ["loss", "ours: evaluation loss", ".2f"],
                           ["peer_setup_gram", "peer setup: Gram", ".2f"],
                           ["peer_setup_meanstd", "peer setup: mean/std", ".2f"]],
               "rows": rows}]  # fmt: skip
    if timing:
        trows = []
        for label, ck in timing.items():
            net = Stylizer(ck, precision="fp32", compile="off")
            spec = net.style_names[0]
            for side in (512, 1024):
                x = torch.rand(1, 3, side * 3 // 4, side)
                plain, moved = (
                    StylizeOptions(style=spec, max_size=0),
                    StylizeOptions(style=spec, max_size=0, palette=1.0),
                )
                runs = {"plain": lambda o=plain, x=x, n=net: n.stylize_tensor(x, o),
                        "palette": lambda o=moved, x=x, n=net: n.stylize_tensor(x, o)}  # fmt: skip
                times: dict[str, list[float]] = {k: [] for k in runs}
                for fn in runs.values():
                    fn()  # warm-up
                for _ in range(rounds):
                    for k, fn in runs.items():
                        t0 = time.perf_counter()
                        fn()
                        times[k].append((time.perf_counter() - t0) * 1000.0)
                med = {k: statistics.median(v) for k, v in times.items()}
                trows.append({"network": label, "size": f"{side}x{side * 3 // 4}",
                              "plain_ms": med["plain"], "palette_ms": med["palette"],
                              "ratio": med["palette"] / med["plain"]})  # fmt: skip
        tables.append({"caption": f"ms per image (median of {rounds}, fp32, {torch.get_num_threads()} "
                                  "threads), the two runs in turn.",
                       "columns": [["network", "network"], ["size", "px"],
                                   ["plain_ms", "without, ms", ".0f"],
                                   ["palette_ms", "--palette 1, ms", ".0f"],
                                   ["ratio", "with / without", ".2f"]],
                       "rows": trows})  # fmt: skip
    geo = {r["variant"]: r for r in rows if r["style"] == "geometric mean"}
    notes = [
        "Geometric means over the styles, ours / peer Gram / peer mean-std: " + "; ".join(
            f"{v}: {r['loss']:.2f} / {r['peer_setup_gram']:.2f} / {r['peer_setup_meanstd']:.2f}"
            for v, r in geo.items()) + ". The default is areas of 1/32 of the longer side "
        "(stylenet/inference/palette.py, LOWPASS_CELLS)."
    ]  # fmt: skip
    return study(
        "palette", "The painting's palette",
        "`--palette` moves an output's colour distribution onto the painting's (the linear "
        "colour transfer of Gatys et al. 2017, Sec. 5.1). *Every pixel*: one map for the whole "
        "output, strokes included. *Areas 1/N*: only the output's broad colour areas (a low-pass "
        "over cells of 1/N of the longer side) move, towards the painting's covariance less the "
        "strokes'; the strokes are added back unchanged. Each network tends to win by the measure "
        "it was trained on, so every variant is scored by our evaluation loss and by the peer "
        "setup's Gram and mean/std distances (stylenet/evaluation/arbitrary.py).",
        tables,
        commands=["stylenet-bench --study palette --checkpoint checkpoints/bank_all-fast.pt "
                  "--content-dir <photos> --photos <held-out list>"],
        notes=notes,
    )  # fmt: skip


def run_study(name: str, args: Any, log: Callable[[str], None] = print) -> dict[str, Any]:
    from stylenet.errors import OptionError

    t0 = time.time()
    if name == "flicker":
        if not args.video:
            raise OptionError("the flicker study needs a clip", option="video")
        data = flicker_study(args.checkpoint or "checkpoints/bank_all.pt", args.video)
    elif name == "jpeg":
        if not args.content_dir:
            raise OptionError("the jpeg study needs photos", option="content_dir")
        names = _photo_list(args.photos) if args.photos else None
        data = jpeg_study(args.checkpoint or "checkpoints/bank_all.pt", args.content_dir, names)
    elif name == "checkerboard-tiny":
        data = checkerboard_tiny_study()
    elif name == "memory":
        data = memory_study()
    elif name == "train-compile":
        data = train_compile_study()
    elif name == "fast-candidates":
        from stylenet.bench.fast import fast_candidates_study

        if not args.content_dir:
            raise OptionError("the fast-candidates study needs photos", option="content_dir")
        data = fast_candidates_study(
            args.content_dir, args.photos, args.checkpoint or "checkpoints/bank_all.pt", log=log
        )
    elif name == "onnx-instance-norm":
        data = onnx_norm_study({"fast": args.fast_checkpoint, "full": args.checkpoint})
    elif name == "palette":
        if not args.content_dir:
            raise OptionError("the palette study needs photos", option="content_dir")
        names = _photo_list(args.photos) if args.photos else None
        nets = {"full": "checkpoints/bank_all.pt", "fast": "checkpoints/bank_all-fast.pt"}
        nets = {k: v for k, v in nets.items() if Path(v).is_file()}
        data = palette_study(args.checkpoint or "checkpoints/bank_all-fast.pt", args.content_dir,
                             names, timing=nets)  # fmt: skip
    else:
        raise OptionError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}", option="study")
    data["wall_s"] = round(time.time() - t0, 1)
    log(render_study(data))
    return data


def _photo_list(path: str) -> list[str]:
    lines = Path(path).read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
