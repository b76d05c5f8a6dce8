"""Ctrl-C and SIGTERM as one request to stop, honoured at safe points.

A handler that raises ``KeyboardInterrupt`` can fire inside an interpreter callback (a fork
hook, a finaliser), where the exception is printed as "ignored" and lost. So the first signal
only records the request, and every long loop (frames, tiles, files, and the steps of a single
image) calls ``check()``, which raises ``KeyboardInterrupt`` there: ``finally`` blocks and the
temporary-file registry then clean up. A second signal raises at once, for a run stuck
somewhere that never checks.
"""

from __future__ import annotations

import signal
import threading

requested = threading.Event()


def handler(signum, frame) -> None:  # noqa: ANN001
    if requested.is_set():
        raise KeyboardInterrupt
    requested.set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested (call once per loop iteration)."""
    if requested.is_set():
        raise KeyboardInterrupt


def install(sigterm: bool = True) -> dict:
    """Route SIGINT (and SIGTERM) through ``handler``; returns the previous handlers."""
    requested.clear()
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    sigs = [signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])
    for s in sigs:
        previous[s] = signal.signal(s, handler)
    return previous


def restore(previous: dict) -> None:
    for s, h in previous.items():
        signal.signal(s, h)
    requested.clear()
