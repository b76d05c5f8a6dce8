"""Export a trained network: ONNX (dynamic size, style weights as an input), TorchScript, and
safetensors + JSON.

Instance norm is computed from explicit mean/variance ops inside the network, not through
``nn.InstanceNorm2d``, so the exported graph does not hit the old ONNX InstanceNormalization
export trap (pytorch#19374: running statistics used in eval mode). The exported graphs take
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

from stylenet.checkpoint import load_network
from stylenet.model import TransformerNet
from stylenet.weights import save_atomic

ONNX_OPSET = 17


class ExportWrapper(nn.Module):
    """``(image [B, 3, H, W] in [0, 1], style_weights [B, S]) -> image``; H, W multiples of 4."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, style_weights: Tensor) -> Tensor:
        return self.net.core(image, style_weights)[0]


def export_onnx(net: TransformerNet, path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(net.float().eval())
    x = torch.rand(1, 3, 64, 64)
    w = torch.full((1, net.num_styles), 1.0 / net.num_styles)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (x, w), str(tmp), dynamo=False, opset_version=opset,
            input_names=["image", "style_weights"], output_names=["stylized"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "style_weights": {0: "batch"},
                          "stylized": {0: "batch", 2: "height", 3: "width"}},
        )  # fmt: skip
    os.replace(tmp, path)
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None):  # noqa: ANN201
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """``image`` [B, 3, H, W] float32 in [0, 1], any size (reflect-padded to multiples of 4)."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    out = session.run(None, {"image": image.astype(np.float32),
                             "style_weights": style_weights.astype(np.float32)})[0]  # fmt: skip
    return out[..., :h, :w]


def export_torchscript(net: TransformerNet, path: str | os.PathLike) -> Path:
    path = Path(path)
    wrapper = ExportWrapper(net.float().eval())
    x = torch.rand(1, 3, 64, 64)
    w = torch.full((1, net.num_styles), 1.0 / net.num_styles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (x, w), check_trace=False)
    tmp = path.with_name(f".{path.name}.tmp")
    traced.save(str(tmp))
    os.replace(tmp, path)
    return path


def export_safetensors(
    net: TransformerNet, style_names: list[str], path: str | os.PathLike
) -> tuple[Path, Path]:
    """Weights as safetensors (model arguments and style names also in its metadata) plus a JSON
    sidecar of the same description."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {
        "model_args": net.config.to_dict(),
        "style_names": list(style_names),
        "format": "stylenet",
    }
    state = {k: v.detach().float().contiguous().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"stylenet": json.dumps(meta)})
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    side.write_text(json.dumps(meta, indent=2) + "\n")
    return path, side


def load_safetensors(path: str | os.PathLike) -> tuple[TransformerNet, list[str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["stylenet"])
    net = TransformerNet(**meta["model_args"])
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
    net, names, _ = load_network(checkpoint)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    info: dict = {"format": fmt, "output": str(out), "styles": names}
    if fmt == "onnx":
        export_onnx(net, out)
        info["max_abs_diff_vs_pytorch"] = check_onnx(out, net)
        meta = out.with_suffix(".json")
        meta.write_text(json.dumps({"model_args": net.config.to_dict(), "style_names": names,
                                    "inputs": {"image": "[B,3,H,W] float32 in [0,1], H and W multiples of 4",
                                               "style_weights": f"[B,{net.num_styles}] float32, rows sum to 1"}},
                                   indent=2) + "\n")  # fmt: skip
    elif fmt == "torchscript":
        export_torchscript(net, out)
        ts = torch.jit.load(str(out))
        x = torch.rand(1, 3, 64, 80)
        w = F.one_hot(torch.tensor([0]), net.num_styles).float()
        with torch.no_grad():
            info["max_abs_diff_vs_pytorch"] = float((ts(x, w) - net(x, w)).abs().max())
    elif fmt == "safetensors":
        p, side = export_safetensors(net, names, out)
        info["sidecar"] = str(side)
    elif fmt == "pt":
        save_atomic(torch.load(checkpoint, weights_only=True), out)
    else:
        raise ValueError(f"unknown format {fmt!r}: onnx, torchscript or safetensors")
    return info
