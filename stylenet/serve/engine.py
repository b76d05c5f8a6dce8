"""The serving engine: one loaded network, a bounded queue, and batches of same-size requests.

Requests are decoded (and shrunk to their output size) by the web layer, then queued here. One
worker thread owns the device: it takes the oldest request, gathers up to ``max_batch`` queued
requests whose working size matches (each with its own style mix: the network mixes gamma/beta
per sample), waits at most ``batch_wait_s`` for more, and runs them as one forward pass. A full
queue is refused at once (the caller answers 503 with ``Retry-After``); a request whose caller
gave up (timeout) is skipped, never computed; ``close`` stops accepting and drains what is
queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from torch import Tensor

from stylenet.errors import MemoryBudgetError, StylenetError
from stylenet.imaging import preserve_color, resize
from stylenet.inference import StylizeOptions, Stylizer

log = logging.getLogger(__name__)


class QueueFull(StylenetError):
    """The queue is at its bound; ``retry_after`` is an estimate in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy; retry shortly")
        self.retry_after = retry_after


class ShuttingDown(StylenetError):
    def __init__(self) -> None:
        super().__init__("the server is shutting down")


@dataclass
class Job:
    x: Tensor  # [1, 3, h, w] at the output size
    mix: Tensor  # [S]
    opts: StylizeOptions
    work: tuple[int, int]
    deadline: float
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    compute_s: float = 0.0


@dataclass
class EngineStats:
    images: int = 0
    batches: int = 0
    busy_s: float = 0.0
    rejected: int = 0
    expired: int = 0

    @property
    def seconds_per_image(self) -> float:
        return self.busy_s / self.images if self.images else 0.0


class Engine:
    def __init__(
        self,
        stylizer: Stylizer,
        max_queue: int = 32,
        max_batch: int = 8,
        batch_wait_s: float = 0.005,
        timeout_s: float = 60.0,
    ) -> None:
        self.st = stylizer
        self.max_queue = int(max_queue)
        self.max_batch = int(max_batch)
        self.batch_wait_s = float(batch_wait_s)
        self.timeout_s = float(timeout_s)
        self.stats = EngineStats()
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="stylenet-engine", daemon=True)
        self._worker.start()

    # -- the caller's side ----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        with self._cv:
            return len(self._queue)

    def submit(self, x: Tensor, mix: Tensor, opts: StylizeOptions) -> Job:
        _, work = self.st.sizes(*x.shape[-2:], opts)
        job = Job(x, mix, opts, work, time.perf_counter() + self.timeout_s)
        with self._cv:
            if self._closing:
                raise ShuttingDown()
            if len(self._queue) >= self.max_queue:
                self.stats.rejected += 1
                per = self.stats.seconds_per_image or 1.0
                raise QueueFull(max(1, round(len(self._queue) * per)))
            self._queue.append(job)
            self._cv.notify()
        return job

    def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting; finish what is queued (up to ``grace_s``), then stop the worker."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._worker.join(grace_s)
        with self._cv:
            while self._queue:
                job = self._queue.popleft()
                if not job.future.done():
                    job.future.set_exception(ShuttingDown())

    # -- the worker -----------------------------------------------------------------------------
    def _take_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._queue:
                if self._closing:
                    return None
                self._cv.wait(0.5)
            first = self._queue.popleft()
            batch = [first]
            end = time.perf_counter() + self.batch_wait_s
            while len(batch) < self.max_batch:
                same = [j for j in self._queue if j.work == first.work]
                for j in same[: self.max_batch - len(batch)]:
                    self._queue.remove(j)
                    batch.append(j)
                left = end - time.perf_counter()
                if len(batch) >= self.max_batch or left <= 0:
                    break
                self._cv.wait(left)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            now = time.perf_counter()
            live = []
            for j in batch:
                if j.future.cancelled() or now > j.deadline:
                    self.stats.expired += 1
                    if not j.future.done():
                        j.future.cancel()
                else:
                    live.append(j)
            if live:
                self._compute(live)

    def _compute(self, jobs: list[Job]) -> None:
        t0 = time.perf_counter()
        try:
            results = self._forward(jobs)
        except Exception as e:  # a failure of this batch fails its requests, not the server
            if not isinstance(e, StylenetError):
                log.exception("batch of %d failed", len(jobs))
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        dt = time.perf_counter() - t0
        self.stats.images += len(jobs)
        self.stats.batches += 1
        self.stats.busy_s += dt
        for j, y in zip(jobs, results, strict=True):
            j.compute_s = dt / len(jobs)
            if not j.future.done():
                j.future.set_result(y)

    def _forward(self, jobs: list[Job]) -> list[Tensor]:
        st = self.st
        try:
            st.plan(*jobs[0].work, StylizeOptions(max_size=0), batch=len(jobs))
        except MemoryBudgetError:
            if len(jobs) > 1:  # too many at once: one at a time (each may tile)
                return [y for j in jobs for y in self._forward([j])]
            j = jobs[0]
            return [st.stylize_tensor(j.x, _single_opts(j, st))]
        xb = torch.cat([resize(j.x, j.work) for j in jobs])
        mix = torch.stack([j.mix for j in jobs])
        yb = st.forward(xb, mix).cpu()
        out = []
        for j, y in zip(jobs, yb, strict=True):
            src = j.x
            y = resize(y[None], tuple(src.shape[-2:])).clamp(0, 1)
            if j.opts.preserve_color:
                y = preserve_color(y, src)
            if j.opts.strength < 1.0:
                y = j.opts.strength * y + (1.0 - j.opts.strength) * src
            out.append(y.clamp(0, 1))
        return out


def _single_opts(job: Job, st: Stylizer) -> StylizeOptions:
    from dataclasses import replace

    return replace(job.opts, style=job.mix.tolist(), max_size=0)
