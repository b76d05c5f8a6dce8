"""Conditional instance norm (Dumoulin et al. 2017, Sec. 2.2): instance norm whose gamma/beta come
from a ``StyleParams`` (rows of a per-style table, mixed; or given per layer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylenet.nn.params import StyleParams, as_params, mix_rows

# Johnson et al. use eps=1e-5 inside instance norm (torch's default), kept here.
_EPS = 1e-5


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    # Casts only when needed: no-op Cast nodes confuse the ONNX exporter's graph clean-up.
    return t if t.dtype == dtype else t.to(dtype)


def _f32(t: Tensor) -> Tensor:
    return _as(t, torch.float32)


def instance_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and (biased) variance over H, W, in fp32, ``[B, C, 1, 1]``.

    On a CPU, torch's fused ``var_mean`` was 7-15x slower than two plain passes (mean, then the
    norm of the deviations) on every shape the networks normalise (2 AVX2 cores, fp32 and bf16:
    10.7 ms against under 2 ms for a 16x512x512 map), and it was a third of the fast network's
    time at 512 px. The two-pass form is the exact one (no E[x^2]-E[x]^2 cancellation). On other
    devices the fused kernel is kept. Reductions accumulate in fp32 for bf16/fp16 inputs.
    """
    if x.device.type == "cpu":
        mean = x.mean(dim=(2, 3), keepdim=True, dtype=torch.float32)
        dev = torch.linalg.vector_norm(x - mean, dim=(2, 3), keepdim=True, dtype=torch.float32)
        # No float() on the sizes: an exported trace must keep them symbolic (dynamic H, W).
        return mean, dev * dev / (x.shape[2] * x.shape[3])
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
    return _f32(mean), _f32(var)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose affine parameters are a convex mix of per-style rows.

    ``style`` is a ``StyleParams``, or a mix tensor of this layer's rows: ``[B, S]`` (the share of
    each style, per sample) or ``[B, S, H, W]`` (a share map per style: spatially varying blends,
    resized here to the feature map's size). ``index`` is the layer's position in its network
    (set by the network; per-layer parameters are looked up by it).
    """

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_styles = num_styles
        self.index = 0
        # Whether an ONNX export writes the native InstanceNormalization op (``_onnx_forward``)
        # instead of the explicit form; set only for the length of ``export_onnx(native_norm=True)``.
        self.onnx_native = False
        # Dumoulin et al. initialise gamma=1, beta=0 for every style (identity affine).
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    # The state-dict names of the per-style tables: one row per style (what a bank adds, removes,
    # reorders and merges; see TransformerNet.is_row_key).
    ROW_PARAMS = ("gamma", "beta")

    def affine(self, mix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """gamma/beta of the rows mixed by ``mix`` (``[B, S]`` or ``[B, S, H, W]``)."""
        return mix_rows(mix, self.gamma, self.beta, size)

    def forward(
        self,
        x: Tensor,
        style: Tensor | StyleParams,
        stats: tuple[Tensor, Tensor] | None = None,
        relu: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        g, b = as_params(style).affine(self, (x.shape[-2], x.shape[-1]))
        if stats is None and self.onnx_native and torch.onnx.is_in_onnx_export():
            return self._onnx_forward(x, g, b, relu)
        if stats is None:
            mean, var = instance_stats(x)
        else:
            mean, var = stats
        # Normalise and apply gamma/beta in one pass over the activation:
        # (x - mean) / std * g + b  ==  x * scale + shift.
        scale = _f32(g) * torch.rsqrt(var + _EPS)
        shift = _f32(b) - mean * scale
        y = torch.addcmul(_as(shift, x.dtype), x, _as(scale, x.dtype))
        if relu:
            # In place when no gradient is recorded: one pass and one allocation fewer per layer.
            y = y.relu_() if not torch.is_grad_enabled() else F.relu(y)
        return y, (mean, var)

    @staticmethod
    def _onnx_forward(
        x: Tensor, g: Tensor, b: Tensor, relu: bool
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The same function as an ONNX graph's native ``InstanceNormalization`` op (the sample's
        own statistics: ``F.instance_norm`` without running statistics, so not the eval-mode trap
        of pytorch#19374) followed by the mixed gamma/beta, written by
        ``export_onnx(native_norm=True)``. Not the default: onnxruntime runs the op as one kernel
        where the explicit form is five (ReduceMean, Sub, ReduceL2, Mul, Add), yet on 2 shared
        AMD EPYC threads the fast network's file was 1.05-1.11x faster at 512 px and 0.93-1.11x
        at 1024 px over four runs (the last is bench/studies/onnx-instance-norm.json), and the
        full network's within 3% either way: not a reliable gain. The exported graph returns
        only the image, so the statistics given back here are the affine's own tensors, never
        read."""
        y = F.instance_norm(x, eps=_EPS) * _as(g, x.dtype) + _as(b, x.dtype)
        if relu:
            y = F.relu(y)
        return y, (g, b)
