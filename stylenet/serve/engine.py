"""The serving engine: one loaded network, a bounded queue, and batches of same-size requests.

Requests are decoded (and shrunk to their output size) by the web layer, then queued here. One
worker thread owns the device: it takes the oldest request, gathers up to ``max_batch`` queued
requests whose working size matches (each with its own style mix: the network mixes gamma/beta
per sample), waits at most ``batch_wait_s`` for more, and runs them as one forward pass.

Admission: the engine measures the time it spends per megapixel of working size. A request is
refused at once (``QueueFull``: the caller answers 503 with ``Retry-After``) when the queue is at
its bound, or when the work queued ahead of it plus its own would take longer than the timeout:
the client would only get a 504 after waiting for it. A request whose client has gone (it timed
out, or disconnected: the web layer cancels its future) is dropped, never computed; one that can
no longer finish before its deadline is dropped before its pass starts and answered at once
(``QueueFull``, 503), not at its deadline. These decisions plan with a cautious figure
(``planning_seconds_per_megapixel``: the slowest of the recent passes, with a margin), since a
pass that overruns answers its whole batch with 504s. ``close`` stops
accepting and drains what is queued. Every refusal and drop is counted (``EngineStats``, in
``/healthz``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch
from torch import Tensor

from stylenet.errors import MemoryBudgetError, StylenetError
from stylenet.inference.palette import PaletteTarget
from stylenet.inference.stylizer import StylizeOptions, Stylizer, finish
from stylenet.io.images import resize

log = logging.getLogger(__name__)


class QueueFull(StylenetError):
    """The queue is at its bound, or its expected wait passes the timeout; ``retry_after`` is an
    estimate in seconds."""

    def __init__(self, retry_after: int, why: str = "") -> None:
        super().__init__(f"the server is busy{f' ({why})' if why else ''}; retry shortly")
        self.retry_after = retry_after


class Expired(StylenetError):
    """A queued request that could no longer be done within its timeout."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"not done within {timeout_s:g} s; the server is overloaded")


class ClientGone(StylenetError):
    """The client disconnected before its result was ready (nobody reads the answer)."""

    def __init__(self) -> None:
        super().__init__("the client disconnected")


class ShuttingDown(StylenetError):
    def __init__(self) -> None:
        super().__init__("the server is shutting down")


@dataclass
class Job:
    x: Tensor  # [1, 3, h, w] at the output size
    mix: Tensor  # [S + K]: the bank's rows, then the job's K extra rows
    opts: StylizeOptions
    work: tuple[int, int]
    deadline: float
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    compute_s: float = 0.0
    # Per layer (gamma [K, C], beta [K, C]) predicted from the request's style image, or None.
    extra: list | None = None
    # The colours to move the output to when opts.palette > 0 (stylenet.inference.palette).
    palette: PaletteTarget | None = None

    @property
    def megapixels(self) -> float:
        return self.work[0] * self.work[1] / 1e6


@dataclass
class EngineStats:
    images: int = 0
    batches: int = 0
    busy_s: float = 0.0
    busy_megapixels: float = 0.0
    rejected: int = 0  # refused: the queue was full
    refused_wait: int = 0  # refused: the expected wait passed the timeout
    expired: int = 0  # dropped: could not be done in time
    client_gone: int = 0  # dropped: the client had timed out or disconnected
    late: int = 0  # computed, but finished after the client's deadline

    @property
    def seconds_per_image(self) -> float:
        return self.busy_s / self.images if self.images else 0.0

    @property
    def seconds_per_megapixel(self) -> float | None:
        """Measured compute time per megapixel of working size (None before the first pass)."""
        return self.busy_s / self.busy_megapixels if self.busy_megapixels else None


# Admission and the start of each pass plan with the slowest per-megapixel time of the last
# RECENT_PASSES passes times PLAN_MARGIN, not with the mean: a pass that overruns its estimate
# answers every request in it with a 504 after the full timeout, which an early 503 avoids.
# Measured on one CPU core with the shipped bank, 768x576 requests, a burst of 32 being decoded
# beside the passes (tests/test_serve.py's burst test): the same single-image pass took 1.10 to
# 1.77 s, and a first batch of 3 took 1.35x the warm-up's per-megapixel time (with the mean and
# no margin, 1 to 7 requests of that burst got 504s). 1.5 covers that with room; its cost is
# refusing a request that might just have made it. Eight passes forget a slow spell in seconds.
RECENT_PASSES = 8
PLAN_MARGIN = 1.5


def planning_figure(recent: Iterable[float], margin: float = PLAN_MARGIN) -> float | None:
    """Seconds per megapixel to plan with: the slowest of ``recent`` times ``margin``."""
    recent = list(recent)
    return max(recent) * margin if recent else None


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
        self._running_mp = 0.0  # megapixels of the batch being computed
        self._recent: deque[float] = deque(maxlen=RECENT_PASSES)  # seconds per megapixel
        self._worker = threading.Thread(target=self._run, name="stylenet-engine", daemon=True)
        self._worker.start()

    # -- the caller's side ----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        with self._cv:
            return len(self._queue)

    @property
    def planning_seconds_per_megapixel(self) -> float | None:
        """The cautious time per megapixel admission and each pass plan with (see
        ``PLAN_MARGIN``); None before the first pass."""
        with self._cv:
            return planning_figure(self._recent)

    def expected_wait_s(self, extra_megapixels: float = 0.0) -> float | None:
        """Seconds until the queued work (and ``extra_megapixels`` more) would be done, by the
        planning figure; None before anything was measured."""
        per = self.planning_seconds_per_megapixel
        if per is None:
            return None
        with self._cv:
            queued = sum(j.megapixels for j in self._queue) + self._running_mp
        return (queued + extra_megapixels) * per

    def submit(
        self,
        x: Tensor,
        mix: Tensor,
        opts: StylizeOptions,
        extra: list | None = None,
        palette: PaletteTarget | None = None,
    ) -> Job:
        _, work = self.st.sizes(*x.shape[-2:], opts)
        job = Job(x, mix, opts, work, time.perf_counter() + self.timeout_s, extra=extra,
                  palette=palette)  # fmt: skip
        per = self.planning_seconds_per_megapixel
        with self._cv:
            if self._closing:
                raise ShuttingDown()
            ahead = sum(j.megapixels for j in self._queue) + self._running_mp
            if len(self._queue) >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(max(1, math.ceil(ahead * (per or 1.0))), "queue full")
            if per is not None and (ahead + job.megapixels) * per > self.timeout_s:
                # It could not be answered in time: say so now, not with a 504 a minute later.
                self.stats.refused_wait += 1
                raise QueueFull(
                    max(1, math.ceil(ahead * per)),
                    f"about {ahead * per:.0f} s of work queued, the timeout is {self.timeout_s:g} s",
                )
            self._queue.append(job)
            self._cv.notify()
        return job

    def cancel(self, job: Job) -> bool:
        """The client has gone (timed out or disconnected): drop the job if it has not run.
        True when it was dropped, never computed; False when its pass had started (or it was
        already answered)."""
        if not job.future.cancel():
            return False
        with self._cv:
            self.stats.client_gone += 1
            if job in self._queue:
                self._queue.remove(job)
        return True

    def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting; finish what is queued (up to ``grace_s``), then stop the worker."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._worker.join(grace_s)
        with self._cv:
            while self._queue:
                job = self._queue.popleft()
                _settle(job.future, ShuttingDown())

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
            kept = self._in_time([j for j in batch if not j.future.cancelled()])
            if kept:
                with self._cv:
                    self._running_mp = sum(j.megapixels for j in kept)
                try:
                    self._compute(kept)
                finally:
                    with self._cv:
                        self._running_mp = 0.0

    def _in_time(self, jobs: list[Job]) -> list[Job]:
        """The jobs (oldest first) that this pass can finish before each one's deadline. A job
        that could not finish even alone is dropped (its client would have given up by then);
        one that only misses because of the others goes back to the front of the queue."""
        per = self.planning_seconds_per_megapixel or 0.0
        now = time.perf_counter()
        kept: list[Job] = []
        back: list[Job] = []
        mp = 0.0
        for j in jobs:
            if now + per * j.megapixels > j.deadline:
                self.stats.expired += 1
                # answered at once (503), not at its deadline (504)
                _settle(j.future, QueueFull(max(1, math.ceil(per * mp)), "no time left"))
                continue
            finish = now + per * (mp + j.megapixels)
            if all(finish <= k.deadline for k in (*kept, j)):
                # From here its client can no longer cancel it (it is computed and answered);
                # False: the client went away a moment ago.
                if not j.future.set_running_or_notify_cancel():
                    continue
                kept.append(j)
                mp += j.megapixels
            else:
                back.append(j)
        if back:
            with self._cv:
                self._queue.extendleft(reversed(back))
        return kept

    def _compute(self, jobs: list[Job]) -> None:
        t0 = time.perf_counter()
        try:
            results = self._forward(jobs)
        except Exception as e:  # a failure of this batch fails its requests, not the server
            if not isinstance(e, StylenetError):
                log.exception("batch of %d failed", len(jobs))
            for j in jobs:
                _settle(j.future, e)
            return
        end = time.perf_counter()
        dt = end - t0
        self.stats.images += len(jobs)
        self.stats.batches += 1
        self.stats.busy_s += dt
        mp = sum(j.megapixels for j in jobs)
        self.stats.busy_megapixels += mp
        if mp > 0:
            with self._cv:
                self._recent.append(dt / mp)
        for j, y in zip(jobs, results, strict=True):
            j.compute_s = dt / len(jobs)
            if end > j.deadline:
                self.stats.late += 1
            _settle(j.future, result=y)

    def _forward(self, jobs: list[Job]) -> list[Tensor]:
        st = self.st
        try:
            st.plan(*jobs[0].work, StylizeOptions(max_size=0), batch=len(jobs))
        except MemoryBudgetError:
            if len(jobs) > 1:  # too many at once: one at a time (each may tile)
                return [y for j in jobs for y in self._forward([j])]
            j = jobs[0]
            if j.extra:  # no pass fits (the plan raised for one image): the same answer
                raise
            return [st.stylize_tensor(j.x, _single_opts(j, st))]
        xb = torch.cat([resize(j.x, j.work) for j in jobs])
        mix, extra = batch_mix(jobs, st.net.num_styles)
        yb = st.forward(xb, mix, extra=extra).cpu()
        return [finish(y[None], j.x, j.opts, j.palette) for j, y in zip(jobs, yb, strict=True)]


def batch_mix(jobs: list[Job], num_styles: int) -> tuple[Tensor, list | None]:
    """One ``[B, S + K]`` mix for a batch whose jobs bring their own extra rows (K in all): each
    job's shares of its own extra rows go to its block of columns, zeros elsewhere."""
    S = num_styles
    k_total = sum(int(j.extra[0][0].shape[0]) for j in jobs if j.extra)
    if not k_total:
        return torch.stack([j.mix[:S] for j in jobs]), None
    mix = torch.zeros(len(jobs), S + k_total)
    at = S
    for b, j in enumerate(jobs):
        mix[b, :S] = j.mix[:S]
        if j.extra:
            k = int(j.extra[0][0].shape[0])
            mix[b, at : at + k] = j.mix[S : S + k]
            at += k
    layers = len(next(j.extra for j in jobs if j.extra))
    extra = [
        (torch.cat([j.extra[i][0] for j in jobs if j.extra]),
         torch.cat([j.extra[i][1] for j in jobs if j.extra]))
        for i in range(layers)
    ]  # fmt: skip
    return mix, extra


def _settle(future: Future, error: BaseException | None = None, result: object = None) -> None:
    """Complete a job's future unless its client completed (cancelled) it first: the two
    threads may race, and the engine's thread must never die of it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def _single_opts(job: Job, st: Stylizer) -> StylizeOptions:
    from dataclasses import replace

    return replace(job.opts, style=job.mix.tolist(), max_size=0)
