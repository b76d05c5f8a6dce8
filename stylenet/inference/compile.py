"""Shape-specialised compilation of the network for inference.

The network's cost on a GPU is not its convolutions but the chain around them (instance-norm
reductions, scale/shift, ReLU, reflection padding: about 70% of GPU time in an eager profile of
a 1024x1024 image on an H100); ``torch.compile`` with static shapes fuses that chain
(1024x1024 bf16: 14.9 ms eager channels_last, 3.7 ms compiled; compile 8-13 s per shape, all
measured on an H100). Dynamic-shape compilation fuses less (15.9 ms) and took 53 s, so each input
shape gets its own graph.

Policy (``mode``):

- ``"on"``: compile every new shape (up to ``max_shapes``; later shapes run eager);
- ``"auto"``: compile a shape when it pays back within the run at hand. The first call of a
  shape runs eager and is timed; at the second, the shape is compiled if the calls still expected
  (``expect``: a folder's images of that size, a video's frames) times the time each would save
  exceed the compile time. Where nobody says how many calls are coming (a server, the Python
  API), a shape seen twice is compiled on CUDA and never on a CPU. A single image never waits
  for a compilation; a 20-frame clip of tiny frames neither;
- ``"off"``: eager.

If compilation is unavailable (no compiler toolchain, an unsupported platform), the first
failure prints one notice and everything runs eager from then on; nothing crashes.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from stylenet.errors import OptionError

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
# How a compilation fails where compiling is not possible: dynamo and inductor errors derive
# from RuntimeError, a missing C compiler or Triton is an OSError or ImportError, a compiler
# that fails is a SubprocessError, an op without a lowering NotImplementedError.
COMPILE_ERRORS = (RuntimeError, OSError, ImportError, subprocess.SubprocessError,
                  NotImplementedError)  # fmt: skip
# Shapes compiled per network before new shapes run eager: a folder of mixed photo sizes would
# otherwise compile (and hold GPU memory for) a graph per size. 8 is also dynamo's default
# recompile limit per function.
MAX_SHAPES = 8
# Seconds one compilation takes, and the share of an eager call's time that compiling saves.
# CUDA: from the eager-vs-compiled profile on an H100 (1024x1024 bf16: 8-13 s to compile;
# 14.9 ms eager -> 3.7 ms compiled, 75% saved); not yet re-measured by the GPU suite.
# CPU: bench/results/20261123T113710_cpu.json (2 AVX2 cores, fp32, 256-1024 px, full and narrow):
# first compiled call 3.3-22.5 s, so 30 s is a pessimistic bound; compiling saved 19-53% of an
# eager call, median 30%.
COMPILE_SECONDS = {"cuda": 12.0, "cpu": 30.0}
SAVED_SHARE = {"cuda": 0.75, "cpu": 0.30}


def normalise_mode(mode: str | bool | None) -> str:
    if mode is True:
        return "on"
    if mode in (False, None):
        return "off"
    if mode not in MODES:
        raise OptionError(f"must be auto, on or off; got {mode!r}", option="compile")
    return str(mode)


def _raise_dynamo_limit(n: int) -> None:
    import torch._dynamo.config as dc

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dc, name) and getattr(dc, name) < n:
            setattr(dc, name, n)


class ShapeCompiled:
    """Calls ``fn`` eagerly or through ``torch.compile(fn, dynamic=False)`` per input shape."""

    def __init__(
        self,
        fn: Callable[..., Any],
        mode: str = "auto",
        enabled_here: bool = True,
        max_shapes: int = MAX_SHAPES,
        compile_mode: str | None = None,
        label: str = "network",
    ) -> None:
        self.fn = fn
        self.mode = normalise_mode(mode)
        self.active = self.mode in ("on", "auto")
        self.max_shapes = max_shapes
        self.compile_mode = compile_mode
        self.label = label
        self.enabled_here = enabled_here
        self._compiled: Callable[..., Any] | None = None
        self._seen: OrderedDict[tuple, int] = OrderedDict()
        self._eager_s: dict[tuple, float] = {}
        self._ready: set[tuple] = set()
        self.expected: int | None = None
        self.compile_seconds: dict[tuple, float] = {}
        self._full_notice = False

    def _compiled_fn(self) -> Callable[..., Any]:
        if self._compiled is None:
            _raise_dynamo_limit(self.max_shapes * 4)
            self._compiled = torch.compile(self.fn, dynamic=False, mode=self.compile_mode)
        return self._compiled

    def expect(self, calls: int | None) -> None:
        """How many calls of one shape the current run will make (None: unknown)."""
        self.expected = calls
        self._seen.clear()

    def pays(self, key: tuple, device: str) -> bool:
        """Whether compiling ``key`` now saves time over the calls still expected."""
        if self.expected is None:
            return self.enabled_here  # an open-ended stream: worth it on CUDA only
        remaining = self.expected - self._seen[key] + 1
        t = self._eager_s.get(key, 0.0)
        dev = "cuda" if device == "cuda" else "cpu"
        return remaining * t * SAVED_SHARE[dev] > COMPILE_SECONDS[dev]

    def _want(self, key: tuple, device: str) -> bool:
        if not self.active:
            return False
        if key in self._ready:
            return True
        self._seen[key] = self._seen.get(key, 0) + 1
        if self.mode == "auto" and (self._seen[key] < 2 or not self.pays(key, device)):
            return False
        if len(self._ready) >= self.max_shapes:
            if not self._full_notice:
                log.info(
                    "compiled %d input shapes already; further shapes run eager", self.max_shapes
                )
                self._full_notice = True
            return False
        return True

    def __call__(self, x: torch.Tensor, *args: Any) -> Any:
        # Non-tensor arguments (given norm statistics, or None) change the graph too.
        key = (
            tuple(x.shape),
            x.dtype,
            x.device.type,
            tuple(tuple(a.shape) if torch.is_tensor(a) else type(a).__name__ for a in args),
        )
        if not self._want(key, x.device.type):
            if self.mode == "auto" and self.active and key not in self._eager_s:
                t0 = time.perf_counter()
                out = self.fn(x, *args)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                self._eager_s[key] = time.perf_counter() - t0
                return out
            return self.fn(x, *args)
        if key in self._ready:
            return self._compiled_fn()(x, *args)
        t0 = time.perf_counter()
        try:
            out = self._compiled_fn()(x, *args)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
        except COMPILE_ERRORS as e:  # no compiler, unsupported op/platform: eager from now on
            log.warning(
                "note: torch.compile is unavailable here (%s: %s); running the %s eagerly",
                type(e).__name__,
                str(e).strip().splitlines()[0][:160] if str(e).strip() else "",
                self.label,
            )
            self.active = False
            return self.fn(x, *args)
        dt = time.perf_counter() - t0
        self.compile_seconds[key] = dt
        self._ready.add(key)
        log.info(
            "compiled the %s for input %s in %.1f s", self.label, "x".join(map(str, key[0])), dt
        )
        return out

    @property
    def compiled_shapes(self) -> int:
        return len(self._ready)
