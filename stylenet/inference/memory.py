"""Memory a stylization needs, and the budget it must stay within.

Before any pixels are processed, ``Stylizer`` estimates the peak memory of the forward pass; if it
exceeds the budget, the image is tiled automatically (tiles sized to fit), and if even tiling
cannot fit (the full-size buffers alone are too big) the request is refused with one line. No
input can make the process grow past the budget by more than the estimate's error.

Bytes per pixel of one forward pass, per base channel of the network (``base_channels``), by
device and precision: ``bench/studies/memory.json`` (``stylenet-bench --study memory``: peak RSS,
``VmHWM``, around one ``net.core`` call in a fresh process, 1 image, 512/1024/2048 px squares,
2 threads, AMD EPYC AVX2):

- fp32: 20.5-21.0 at 2048 px (channels_last, the CPU default), 29.0 in NCHW; smaller images carry
  a fixed overhead that shows as more per pixel (up to 41 for the narrow model in NCHW at 512 px,
  about 27 MB over the estimate there, well inside the half of free memory the budget leaves).
  We use 34: at or above every cell from 1024 px up (narrow NCHW at 1024 px: 33.0), where
  budgets decide anything.
- bf16 on a CPU without AMX: 166-195 (oneDNN has no bf16 kernel there and the 9x9 convolutions
  fall back to an unfolded path); we use 200. On AMX CPUs bf16 runs in oneDNN, not measured
  here: the fp32 figure is used.
- CUDA: not measured in this file's measurement run; the analytic peak (the up-sampling stage
  holds about 4 full-resolution activations of ``base_channels`` channels) plus cuDNN workspace
  gives 24 (fp32) and 16 (bf16/fp16). ``stylenet-bench --suite gpu`` records the measured
  value next to this estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stylenet.runtime.device import available_memory, cpu_bf16_fast

# Default budget: half of what is free. The rest covers the decoded image, the output, the
# previous image's buffers in a folder run, and other processes on the machine.
DEFAULT_BUDGET_FRACTION = 0.5

_CPU_FP32 = 34
_CPU_BF16_EMULATED = 200
_CUDA_FP32 = 24
_CUDA_16BIT = 16

# Host-side buffers of one image per pixel at the working size: float32 input (12 B), its
# resized copy (12), the float32 output (12) and the uint8 image out (3).
HOST_BYTES_PER_PIXEL = 39
# Tiled runs also keep a float32 accumulator of the output and its weights (16 B/px).
TILED_EXTRA_BYTES_PER_PIXEL = 16


def bytes_per_pixel(base_channels: int, device: torch.device, dtype: torch.dtype) -> int:
    if device.type == "cuda":
        per = _CUDA_FP32 if dtype == torch.float32 else _CUDA_16BIT
    elif dtype == torch.float32 or cpu_bf16_fast():
        per = _CPU_FP32
    else:
        per = _CPU_BF16_EMULATED
    return per * int(base_channels)


def forward_bytes(
    base_channels: int, h: int, w: int, batch: int, device: torch.device, dtype: torch.dtype
) -> int:
    """Peak bytes of one forward pass on ``batch`` images of h x w (padded to multiples of 4)."""
    hp, wp = h + (-h) % 4, w + (-w) % 4
    return batch * hp * wp * bytes_per_pixel(base_channels, device, dtype)


def resolve_budget(
    budget: int | None, device: torch.device, fraction: float = DEFAULT_BUDGET_FRACTION
) -> int | None:
    """An explicit budget in bytes, or ``fraction`` of the memory free now (None: unknown)."""
    if budget:
        return int(budget)
    free = available_memory(device)
    if free is None:
        return None
    if device.type == "cuda":
        # Memory torch's caching allocator holds but does not use is free for us too.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free * fraction)


def parse_size(text: str) -> int:
    """``"2G"``, ``"512M"``, ``"1.5GB"``, ``"800000000"`` -> bytes."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    f = units.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in units else t
    try:
        v = float(num)
    except ValueError as e:
        raise ValueError(f"not a size: {text!r} (e.g. 2G, 512M)") from e
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"must be a positive size, got {text!r}")
    return int(v * f)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass
class Plan:
    """How one image of the working size will be run."""

    work_size: tuple[int, int]
    tile: int  # 0: one pass
    forward_bytes: int  # the estimated device peak of the chosen plan
    host_bytes: int
    budget: int | None
    auto_tiled: bool = False
    stats_size: int = 1024  # longer side of the whole-image statistics pass of a tiled run
