"""Load on a live server: many concurrent clients posting to ``/v1/stylize``.

Used by the load test (a bounded run in CI) and by ``stylenet-bench --serve`` (figures for
BENCHMARKS.md): every request is counted, answered or not, so nothing can be lost silently.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(checkpoint: str | Path, *args: str, timeout: float = 120.0):  # noqa: ANN201
    """``stylenet-serve`` in a subprocess on a free port of 127.0.0.1; yields its base URL."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "stylenet.serve",
        "-c",
        str(checkpoint),
        "--port",
        str(port),
        *args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stdout.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > timeout:
                raise RuntimeError("the server did not come up")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_test(
    url: str,
    image: bytes,
    requests: int = 200,
    concurrency: int = 16,
    form: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """POST ``requests`` images from ``concurrency`` client threads; latency percentiles and the
    status of every request."""
    import httpx

    lock = threading.Lock()
    todo = list(range(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=timeout) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                t0 = time.perf_counter()
                try:
                    r = c.post(f"{url}/v1/stylize", files={"image": ("p.jpg", image, "image/jpeg")},
                               data=form or {})  # fmt: skip
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = -1
                    with lock:
                        errors.append(type(e).__name__)
                dt = time.perf_counter() - t0
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == 200:
                        latencies.append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000 if lat else 0.0

    return {
        "requests": requests, "concurrency": concurrency, "answered": sum(statuses.values()),
        "ok": statuses.get(200, 0), "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors, "wall_s": wall, "requests_per_s": requests / wall if wall else 0.0,
        "p50_ms": pct(50), "p95_ms": pct(95), "mean_ms": statistics.mean(lat) * 1000 if lat else 0.0,
    }  # fmt: skip


# The camera page's frame: the longer side capped at 512 px (stylenet/serve/static/app.js,
# cameraLoop), a 4:3 webcam picture, JPEG quality 0.85 as the page's canvas.toBlob sends it.
CAMERA_SIDE = 512
CAMERA_JPEG_QUALITY = 85


def camera_frame(side: int = CAMERA_SIDE) -> bytes:
    """A camera-sized JPEG frame of the bundled sample photo, encoded as the page encodes it."""
    from PIL import Image

    from stylenet.io.files import encode_image
    from stylenet.io.paths import SAMPLE_CONTENT_DIR

    photo = Image.open(SAMPLE_CONTENT_DIR / "gcompris_worldanimals_lemur.jpg").convert("RGB")
    frame = photo.resize((side, side * 3 // 4), Image.Resampling.BILINEAR)
    return encode_image(frame, "JPEG", CAMERA_JPEG_QUALITY)


def camera_rate(
    checkpoint: str | Path, frames: int = 40, side: int = CAMERA_SIDE,
    server_args: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """Frames per second of the camera page against a live server on ``checkpoint``: one frame
    in flight at a time, the next sent when the previous comes back, as the page's loop does
    (the browser's own capture and JPEG encoding are not included)."""
    data = camera_frame(side)
    with live_server(checkpoint, *server_args) as url:
        form = {"max_size": str(side)}
        load_test(url, data, requests=3, concurrency=1, form=form)  # warm-up: first-call costs
        r = load_test(url, data, requests=frames, concurrency=1, form=form)
    r.update(checkpoint=str(checkpoint), image=f"{side}x{side * 3 // 4}",
             server_args=" ".join(server_args), fps=r["requests_per_s"])  # fmt: skip
    return r
