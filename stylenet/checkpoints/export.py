"""Export a trained network: ONNX (dynamic size, style weights as an input), TorchScript, and
safetensors + JSON.

Instance norm is computed from explicit mean/variance ops inside the network, not through
``nn.InstanceNorm2d``, so the exported graph does not hit the old ONNX InstanceNormalization
export trap (pytorch#19374: running statistics used in eval mode). ``native_norm=True`` writes
ONNX's own InstanceNormalization op over the sample's statistics instead; it was not faster in
onnxruntime (``ConditionalInstanceNorm2d._onnx_forward``). The exported graphs take
heights and widths that are multiples of 4 (the two stride-2 stages); ``run_onnx`` pads for you.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylenet.checkpoints.format import load_network
from stylenet.errors import CheckpointError, OptionError
from stylenet.io.files import atomic_write, write_text
from stylenet.io.images import pad_to_multiple
from stylenet.nn.network import TransformerNet, build_model

ONNX_OPSET = 17
FORMATS = ("onnx", "torchscript", "safetensors")


def sidecar_path(path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``: one description per exported file, so exporting
    one checkpoint to two formats never writes the same sidecar twice."""
    p = Path(path)
    return p.with_name(p.name + ".json")


class ExportWrapper(nn.Module):
    """``(image [B, 3, H, W] in [0, 1], mix [B, S]) -> image``; H, W multiples of 4."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, mix: Tensor) -> Tensor:
        return self.net.core(image, mix)[0]


def export_onnx(
    net: TransformerNet, path: str | os.PathLike, opset: int = ONNX_OPSET, native_norm: bool = False
) -> Path:
    """``native_norm=True`` writes the norms as ONNX's InstanceNormalization op instead of the
    explicit mean/variance form (the same function; kept to measure one against the other:
    ``stylenet-bench --study onnx-instance-norm``)."""
    for n in net.norms():
        n.onnx_native = native_norm
    wrapper = ExportWrapper(net.float().eval())
    x = torch.rand(1, 3, 64, 64)
    w = torch.full((1, net.num_styles), 1.0 / net.num_styles)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (x, w), str(tmp), dynamo=False, opset_version=opset,
                input_names=["image", "mix"], output_names=["stylized"],
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                              "mix": {0: "batch"},
                              "stylized": {0: "batch", 2: "height", 3: "width"}},
            )  # fmt: skip

    try:
        return atomic_write(path, write)
    finally:
        for n in net.norms():
            n.onnx_native = False


def onnx_session(path: str | os.PathLike, threads: int | None = None):  # noqa: ANN201
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, image: np.ndarray, mix: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """``image`` [B, 3, H, W] float32 in [0, 1], any size (reflect-padded to multiples of 4);
    ``mix`` [B, S]. Works with files whose second input is named ``mix`` or, as exported by
    earlier versions, ``style_weights``."""
    h, w = image.shape[-2:]
    padded = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(image, np.float32)), 4).numpy()
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {names[0]: padded, names[1]: mix.astype(np.float32)})[0]
    return out[..., :h, :w]


def export_torchscript(net: TransformerNet, path: str | os.PathLike) -> Path:
    path = Path(path)
    wrapper = ExportWrapper(net.float().eval())
    x = torch.rand(1, 3, 64, 64)
    w = torch.full((1, net.num_styles), 1.0 / net.num_styles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (x, w), check_trace=False)
    return atomic_write(path, lambda tmp: traced.save(str(tmp)))


def export_safetensors(
    net: TransformerNet, style_names: list[str], path: str | os.PathLike
) -> tuple[Path, Path]:
    """Weights as safetensors (model arguments and style names also in its metadata) plus a JSON
    sidecar of the same description."""
    from safetensors.torch import save_file

    meta = {
        "model_args": net.config.to_dict(),
        "style_names": list(style_names),
        "format": "stylenet",
    }
    state = {k: v.detach().float().contiguous().cpu() for k, v in net.state_dict().items()}
    path = atomic_write(
        path, lambda tmp: save_file(state, str(tmp), metadata={"stylenet": json.dumps(meta)})
    )
    side = write_text(sidecar_path(path), json.dumps(meta, indent=2) + "\n")
    return path, side


def load_safetensors(path: str | os.PathLike) -> tuple[TransformerNet, list[str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["stylenet"])
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a stylenet safetensors export ({type(e).__name__})"
        ) from e
    net = build_model(meta["model_args"])
    net.load_state_dict(load_file(str(path)))
    return net.eval(), list(meta["style_names"])


def check_onnx(
    onnx_path: str | os.PathLike, net: TransformerNet, sizes=((64, 96), (130, 70))
) -> float:
    """Max abs difference between onnxruntime and PyTorch over a few sizes and blends."""
    sess = onnx_session(onnx_path)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(2, 3, h, w, generator=g)
        sw = torch.rand(2, net.num_styles, generator=g)
        sw = sw / sw.sum(1, keepdim=True)
        with torch.no_grad():
            ref = net.float().eval()(x, sw).numpy()
        got = run_onnx(sess, x.numpy(), sw.numpy())
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, output: str | os.PathLike) -> dict:
    """Export an inference checkpoint; returns a description (and the check against PyTorch)."""
    if fmt not in FORMATS:
        raise OptionError(f"must be one of {', '.join(FORMATS)}; got {fmt!r}", option="format")
    net, names, _ = load_network(checkpoint)
    out = Path(output)
    info: dict = {"format": fmt, "output": str(out), "styles": names}
    if fmt == "onnx":
        export_onnx(net, out)
        info["max_abs_diff_vs_pytorch"] = check_onnx(out, net)
        meta = {"model_args": net.config.to_dict(), "style_names": names,
                "inputs": {"image": "[B,3,H,W] float32 in [0,1], H and W multiples of 4",
                           "mix": f"[B,{net.num_styles}] float32, rows sum to 1"}}  # fmt: skip
        info["sidecar"] = str(write_text(sidecar_path(out), json.dumps(meta, indent=2) + "\n"))
    elif fmt == "torchscript":
        export_torchscript(net, out)
        ts = torch.jit.load(str(out))
        x = torch.rand(1, 3, 64, 80)
        w = F.one_hot(torch.tensor([0]), net.num_styles).float()
        with torch.no_grad():
            info["max_abs_diff_vs_pytorch"] = float((ts(x, w) - net(x, w)).abs().max())
    else:
        _, side = export_safetensors(net, names, out)
        info["sidecar"] = str(side)
    return info
