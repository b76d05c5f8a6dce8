"""Devices, precisions and memory: the one place that decides where and how a network runs."""

from __future__ import annotations

import os
from functools import lru_cache

import torch

from stylenet.errors import OptionError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_available() -> bool:
    """CUDA is present and not disabled (``STYLENET_FORCE_CPU=1`` hides it, for tests)."""
    if os.environ.get("STYLENET_FORCE_CPU", "") not in ("", "0"):
        return False
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("a CUDA device was requested but none is available", option="device")
    if device != "cpu" and not device.startswith("cuda"):
        raise OptionError(f"must be auto, cpu or cuda[:N], got {device!r}", option="device")
    return torch.device(device)


@lru_cache(maxsize=1)
def cpu_bf16_fast() -> bool:
    """True on CPUs with AMX bf16 tiles (Intel Sapphire Rapids and later), where oneDNN's bf16
    convolutions run about 2x faster than fp32 (measured: full model, 1024x1024, 2 cores, 3.3 s
    fp32 vs 1.4 s bf16; mean abs difference 0.6/255, max 10/255). On CPUs without AMX (AVX2,
    AVX512-BF16 only) bf16 is emulated or barely faster, so fp32 stays the default there."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


@lru_cache(maxsize=1)
def cpu_bf16_convs() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where oneDNN runs
    the loss's VGG16 convolutions (64-512 channels) in bf16 much faster than in fp32: forward and
    backward of relu1_2..relu4_3 for 4 crops of 256 px on 2 AMD EPYC (AVX512-BF16) cores, 1.92 s
    fp32 against 1.08 s bf16. The stylization networks' few-channel and 9x9 convolutions gain
    less or lose there (``cpu_bf16_fast`` decides their precision)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs (fp16 where bf16 is missing) and on CPUs with AMX, else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_bf16_fast() else "fp32"
    if precision not in DTYPES:
        raise OptionError(
            f"must be one of auto, {', '.join(DTYPES)}; got {precision!r}", option="precision"
        )
    return precision


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated: free GPU memory, or the kernel's ``MemAvailable``
    (capped by a cgroup limit when the process runs in a container)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            raw = open(limit_file).read().strip()
            used = int(open(usage_file).read().strip())
        except (OSError, ValueError):
            continue
        if raw.isdigit() and int(raw) < (1 << 60):
            left = int(raw) - used
            avail = left if avail is None else min(avail, left)
        break
    return avail


# torchvision's minor version is torch's plus 15 for every release since torch 2.0 (torch 2.0 /
# torchvision 0.15 ... torch 2.14 / torchvision 0.29), and each torchvision wheel works only with
# the torch it was built for: beside another one its compiled operators fail to register
# ("operator torchvision::nms does not exist").
TORCHVISION_MINOR_OFFSET = 15


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def torch_pair_problem(
    torch_version: str | None = None, vision_version: str | None = None
) -> str | None:
    """One line saying what is wrong when torchvision does not match torch, else None."""
    import importlib.metadata as md

    if torch_version is None:
        torch_version = torch.__version__
    if vision_version is None:
        try:
            vision_version = md.version("torchvision")
        except md.PackageNotFoundError:
            return "torchvision is not installed; install it with: pip install torchvision"
    t, v = _minor(torch_version), _minor(vision_version)
    if t is None or v is None or t[0] != 2 or v[0] != 0:
        return None  # a scheme this rule does not know: say nothing rather than guess
    want = t[1] + TORCHVISION_MINOR_OFFSET
    if v[1] == want:
        return None
    return (
        f"torchvision {vision_version} does not match torch {torch_version} (it needs "
        f"torchvision 0.{want}); install a matching pair, e.g. pip install "
        f'"torch=={torch_version.split("+")[0]}" "torchvision==0.{want}.*"'
    )


def check_torch_pair() -> None:
    """Raise a one-line ``StylenetError`` when torch and torchvision do not match."""
    from stylenet.errors import StylenetError

    problem = torch_pair_problem()
    if problem:
        raise StylenetError(problem)
