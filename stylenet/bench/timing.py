"""Timers and the environment probe of the benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


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
