"""The HTTP API in-process (TestClient), the engine's queue and batching, and a live load test."""

from __future__ import annotations

import io
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from stylenet.checkpoints.format import export_inference_checkpoint, make_thumbnail  # noqa: E402
from stylenet.inference.stylizer import StylizeOptions, Stylizer  # noqa: E402
from stylenet.io.paths import STYLE_DIR  # noqa: E402
from stylenet.nn.network import (
    random_network,
)
from stylenet.serve.app import create_app  # noqa: E402
from stylenet.serve.config import ServeConfig  # noqa: E402
from stylenet.serve.engine import PLAN_MARGIN, Engine, QueueFull  # noqa: E402

NAMES = ["starry_night", "the_scream"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    net = random_network(2)
    p = tmp_path_factory.mktemp("ck") / "bank.pt"
    thumbs = [make_thumbnail(STYLE_DIR / "starry_night.jpg"), None]  # the second has none
    export_inference_checkpoint(net, NAMES, p, thumbnails=thumbs)
    return p


def jpeg(w=96, h=64, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    a = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def client(ckpt):
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", max_upload=200_000,
                      max_pixels=400_000, max_size=512, default_size=128)  # fmt: skip
    with TestClient(create_app(cfg)) as c:
        yield c


def post(client, data=None, image=None, name="p.jpg"):
    return client.post("/v1/stylize", files={"image": (name, image if image is not None else jpeg(), "image/jpeg")},
                       data=data or {})  # fmt: skip


def assert_problem(r, status, text):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and text in body["error"], body
    assert "\n" not in body["error"]


def test_health_styles_and_thumbnails(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["styles"] == 2 and h["queue"] == 0
    s = client.get("/v1/styles").json()
    assert [x["name"] for x in s["styles"]] == NAMES
    assert s["styles"][0]["thumbnail_url"] == "/v1/styles/0/thumbnail"
    assert s["styles"][1]["thumbnail_url"] is None  # an older checkpoint's styles show names
    r = client.get("/v1/styles/0/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size[0] == 160
    assert_problem(client.get("/v1/styles/1/thumbnail"), 404, "no thumbnail")
    assert "/v1/stylize" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'data-testid="gallery"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_stylize_returns_the_network_output(client, ckpt):
    data = jpeg(96, 64)
    r = post(client, {"style": "the_scream", "max_size": "96", "format": "png"}, data)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-stylenet-size"] == "96x64" and float(r.headers["x-stylenet-compute-ms"]) > 0
    got = np.asarray(Image.open(io.BytesIO(r.content)), dtype=int)
    st = Stylizer(ckpt, device="cpu", precision="fp32")
    ref = np.asarray(
        st.stylize(Image.open(io.BytesIO(data)).convert("RGB"), style="the_scream", max_size=0),
        dtype=int,
    )
    assert np.abs(got - ref).max() <= 1
    r = post(
        client, {"style": "starry_night=0.7,the_scream=0.3", "strength": "0", "format": "png"}, data
    )
    back = np.asarray(Image.open(io.BytesIO(r.content)), dtype=int)
    orig = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
    assert back.shape == orig.shape  # the default size (128) caps, never enlarges
    assert np.abs(back - orig).mean() < 1.0  # strength 0: the photo
    r = post(client, {"preserve_color": "true", "stroke_scale": "2", "format": "webp"}, data)
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"


@pytest.mark.parametrize(
    "case,status,text",
    [
        ("not_an_image", 400, "not an image"),
        ("corrupt", 400, "corrupt or truncated"),
        ("unknown_style", 400, "available: 0:starry_night, 1:the_scream"),
        ("strength", 422, "strength: must be within 0..1"),
        ("strength_text", 422, "strength: Input should be a valid number"),
        ("stroke", 422, "stroke_scale: must be within 0.25..8"),
        ("size", 422, "max_size: must be within 16..512"),
        ("format", 422, "format: must be jpeg, png or webp"),
        ("too_big", 413, "larger than the limit"),
        ("too_many_pixels", 413, "is 800x600, more than 0.4 megapixels"),
        ("bomb", 413, "megapixels"),
    ],
)
def test_bad_requests_get_a_json_error(client, case, status, text):
    data, form = jpeg(), {}
    if case == "not_an_image":
        data = b"%PDF-1.4 not an image"
    elif case == "corrupt":
        data = jpeg(400, 300)[:3000]
    elif case == "unknown_style":
        form = {"style": "nope"}
    elif case == "strength":
        form = {"strength": "2"}
    elif case == "strength_text":
        form = {"strength": "lots"}
    elif case == "stroke":
        form = {"stroke_scale": "100"}
    elif case == "size":
        form = {"max_size": "5000"}
    elif case == "format":
        form = {"format": "gif"}
    elif case == "too_big":
        data = bytes(300_000)
    elif case == "too_many_pixels":
        buf = io.BytesIO()  # 480k pixels > 400k, in a small file
        Image.new("RGB", (800, 600), (90, 120, 200)).save(buf, format="JPEG")
        data = buf.getvalue()
    elif case == "bomb":
        data = png_bomb(30000, 30000)  # a few hundred bytes declaring 900 MP
    assert_problem(post(client, form, data), status, text)


def png_bomb(w: int, h: int) -> bytes:
    """A PNG header declaring w x h pixels with almost no data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_nothing_is_left_on_disk(ckpt, tmp_path, monkeypatch):
    # Uploads above 1 MB are spooled to a temporary file by the multipart parser: it must go.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", default_size=64)
    big = jpeg(1200, 900)
    assert len(big) > 2**20
    with TestClient(create_app(cfg)) as c:
        r = post(c, {}, big)
    assert r.status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_overload_is_503_with_retry_after(client, monkeypatch):
    def full(self, x, mix, opts, extra=None, palette=None):
        raise QueueFull(3)

    monkeypatch.setattr(Engine, "submit", full)
    r = post(client)
    assert_problem(r, 503, "busy")
    assert r.headers["retry-after"] == "3"


def test_timeout_is_504(ckpt, monkeypatch):
    original = Engine._forward

    def slow(self, jobs):
        time.sleep(0.6)
        return original(self, jobs)

    monkeypatch.setattr(Engine, "_forward", slow)
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", timeout_s=0.2)
    with TestClient(create_app(cfg)) as c:
        assert_problem(post(c), 504, "not done within")


def test_a_request_never_started_by_its_deadline_is_503_not_504(ckpt, monkeypatch):
    """The first request's pass overruns (504); the one queued behind it never started, so
    it is answered 503 with Retry-After at its deadline, and is never computed."""
    original = Engine._forward
    started = threading.Event()

    def slow(self, jobs):
        started.set()
        time.sleep(1.0)
        return original(self, jobs)

    monkeypatch.setattr(Engine, "_forward", slow)
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", timeout_s=0.4)
    with TestClient(create_app(cfg)) as c:
        first: list = []
        t = threading.Thread(target=lambda: first.append(post(c)))
        t.start()
        assert started.wait(10)
        second = post(c)
        t.join(10)
        for _ in range(50):  # the first pass is still running past its deadline
            health = c.get("/healthz").json()
            if health["images"]:
                break
            time.sleep(0.1)
    assert_problem(first[0], 504, "not done within")
    assert_problem(second, 503, "not started within the timeout")
    assert int(second.headers["retry-after"]) >= 1
    assert health["dropped_client_gone"] == 1 and health["images"] == 1, health


# ----------------------------------------------------------------------------- the engine


def test_engine_batches_same_size_requests_with_their_own_mixes(ckpt):
    st = Stylizer(ckpt, device="cpu", precision="fp32")
    eng = Engine(st, max_queue=16, max_batch=8, batch_wait_s=0.2)
    gate = threading.Event()
    original = eng._forward

    def gated(jobs):
        gate.wait(5)
        return original(jobs)

    eng._forward = gated
    xs = [torch.rand(1, 3, 40, 48) for _ in range(9)]
    mixes = [st.mix(i % 2) for i in range(9)]
    jobs = [eng.submit(x, m, StylizeOptions(max_size=0)) for x, m in zip(xs, mixes, strict=True)]
    gate.set()
    results = [j.future.result(10) for j in jobs]
    eng.close()
    assert eng.stats.images == 9 and eng.stats.batches == 2  # 8 in one batch, the 9th next
    for x, m, y in zip(xs, mixes, results, strict=True):
        ref = st.stylize_tensor(x, StylizeOptions(style=m.tolist(), max_size=0))
        assert (y - ref).abs().max() < 1e-5


def test_engine_refuses_when_full_and_drains_on_close(ckpt):
    st = Stylizer(ckpt, device="cpu", precision="fp32")
    eng = Engine(st, max_queue=2, max_batch=1)
    gate, holding = threading.Event(), threading.Event()
    original = eng._forward
    eng._forward = lambda jobs: (holding.set(), gate.wait(5), original(jobs))[2]
    x = torch.rand(1, 3, 32, 32)
    jobs = [eng.submit(x, st.mix(0), StylizeOptions(max_size=0))]
    assert holding.wait(5)  # the worker holds the first; two more fill the queue
    jobs += [eng.submit(x, st.mix(0), StylizeOptions(max_size=0)) for _ in range(2)]
    with pytest.raises(QueueFull) as e:
        eng.submit(x, st.mix(0), StylizeOptions(max_size=0))
    assert e.value.retry_after >= 1
    gate.set()
    eng.close(grace_s=10)
    assert all(j.future.done() and j.future.exception() is None for j in jobs)
    assert eng.stats.rejected == 1


# ----------------------------------------------------------------------------- live server


def test_load_on_a_live_server(ckpt):
    import httpx

    from stylenet.bench.serve import live_server, load_test

    with live_server(ckpt, "--device", "cpu", "--precision", "fp32", "--queue", "256") as url:
        res = load_test(url, jpeg(64, 48), requests=200, concurrency=16, form={"max_size": "64"})
        health = httpx.get(f"{url}/healthz").json()
    assert res["answered"] == 200 and res["ok"] == 200, res
    # every answer was computed once, by the engine, and nothing was refused or dropped
    assert health["images"] == 200 and health["queue"] == 0, health
    assert health["refused_queue_full"] == health["dropped_client_gone"] == 0, health


def test_camera_rate_sends_one_frame_at_a_time(ckpt, tmp_path):
    from stylenet.bench.report import render_markdown, write_results
    from stylenet.bench.serve import camera_rate
    from stylenet.runtime.machine import environment

    r = camera_rate(ckpt, frames=4, side=64, server_args=("--device", "cpu", "--precision", "fp32"))
    assert r["ok"] == r["requests"] == 4 and r["concurrency"] == 1, r
    assert r["image"] == "64x48" and r["fps"] > 0
    path = write_results({"env": environment(), "camera": [r]}, tmp_path)
    assert path.name.endswith("_camera.json")
    assert f"| {Path(ckpt).name} | 64x48 | 4 | 4 |" in render_markdown([path])


# ----------------------------------------------------------------------------- errors and load


def test_framework_errors_keep_the_documented_format(client):
    def chunks():
        for _ in range(30):
            yield b"x" * 10_000  # 300 kB, chunked (no Content-Length), over the 200 kB limit

    r = client.post("/v1/stylize", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert_problem(r, 413, "larger than the limit")
    r = client.post("/v1/stylize", files={"image": ("p.jpg", jpeg(), "image/jpeg")},
                    data={f"f{i}": "1" for i in range(1001)})  # fmt: skip
    assert_problem(r, 400, "fields")
    assert_problem(client.get("/no/such/page"), 404, "Not Found")
    assert_problem(client.put("/v1/stylize"), 405, "Not Allowed")


def test_a_long_style_value_is_not_echoed(client):
    r = post(client, {"style": "x" * 10_000})
    assert_problem(r, 422, "style: at most")
    assert len(r.text) < 200
    r = post(client, {"style": "y" * 3000})
    assert_problem(r, 400, "unknown style")
    assert len(r.json()["error"]) < 300 and "3000 characters" in r.json()["error"]


def _slow_engine(ckpt, per_call_s: float, **kw):
    st = Stylizer(ckpt, device="cpu", precision="fp32")
    eng = Engine(st, **kw)
    original = eng._forward
    calls: list[tuple[float, list[float]]] = []
    eng.running = threading.Event()  # set once a call has started

    def slow(jobs):
        calls.append((time.perf_counter(), [j.deadline for j in jobs]))
        eng.running.set()
        time.sleep(per_call_s * len(jobs))
        return original(jobs)

    eng._forward = slow
    return st, eng, calls


def test_engine_refuses_work_it_cannot_finish_in_time(ckpt):
    st, eng, calls = _slow_engine(ckpt, 0.3, max_queue=32, max_batch=1, timeout_s=60)
    x = torch.rand(1, 3, 64, 64)
    opts = StylizeOptions(max_size=0)
    warm = eng.submit(x, st.mix(0), opts)
    warm.future.result(10)  # measures the time per megapixel
    # The time each request is planned at: 0.3 s plus the real pass, times PLAN_MARGIN. The
    # timeout is set from it (2.5 requests' worth), so a loaded machine changes nothing.
    plan = eng.planning_seconds_per_megapixel * warm.megapixels
    assert plan >= 0.3 * PLAN_MARGIN
    eng.timeout_s = 2.5 * plan
    accepted, refused = [], []
    for _ in range(10):
        try:
            accepted.append(eng.submit(x, st.mix(0), opts))
        except QueueFull as e:
            refused.append(e)
    # Two fit in the timeout (the second waits for the first); the rest are refused at once.
    assert len(accepted) == 2 and len(refused) == 8, (len(accepted), len(refused))
    assert all(f"timeout is {eng.timeout_s:g} s" in str(e) and e.retry_after >= 1 for e in refused)
    for j in accepted:
        j.future.result(10)
    eng.close()
    assert eng.stats.refused_wait == len(refused) and eng.stats.late == 0
    for started, deadlines in calls[1:]:
        assert all(started + 0.3 <= d + 0.05 for d in deadlines)  # none began too late to finish


def test_engine_drops_work_whose_client_has_gone(ckpt):
    st, eng, calls = _slow_engine(ckpt, 0.3, max_queue=32, max_batch=1, timeout_s=30)
    x = torch.rand(1, 3, 48, 48)
    opts = StylizeOptions(max_size=0)
    jobs = [eng.submit(x, st.mix(0), opts) for _ in range(4)]
    assert eng.running.wait(5)  # the first is running
    for j in jobs[1:3]:
        eng.cancel(j)  # their clients went away
    jobs[3].future.result(10)
    eng.close()
    assert len(calls) == 2 and eng.stats.client_gone == 2 and eng.stats.images == 2


def test_healthz_reports_refusals_and_drops(ckpt):
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", default_size=64)
    with TestClient(create_app(cfg)) as c:
        assert post(c).status_code == 200
        h = c.get("/healthz").json()
    for key in ("ms_per_megapixel", "expected_wait_s", "refused_queue_full",
                "refused_expected_wait", "dropped_expired", "dropped_client_gone"):  # fmt: skip
        assert key in h, key
    assert h["ms_per_megapixel"] > 0 and h["refused_expected_wait"] == 0


@pytest.mark.slow
def test_a_burst_bigger_than_the_timeout_is_refused_early_not_timed_out():
    """32 concurrent 768x576 requests to the shipped bank with a 6 s timeout: the ones that
    cannot be done in time get 503 with Retry-After at once, none waits for a 504, and nothing
    is computed after its client gave up."""
    import httpx

    from stylenet.bench.serve import live_server, load_test

    bank = Path(__file__).resolve().parent.parent / "checkpoints" / "bank_all.pt"
    with live_server(bank, "--device", "cpu", "--timeout", "6") as url:
        load_test(url, jpeg(768, 576), requests=1, concurrency=1)  # the first measurement
        t0 = time.perf_counter()
        res = load_test(url, jpeg(768, 576), requests=32, concurrency=32, timeout=30)
        wall = time.perf_counter() - t0
        health = httpx.get(f"{url}/healthz").json()
    assert res["answered"] == 32, res
    assert set(res["statuses"]) <= {"200", "503"}, res["statuses"]
    assert res["ok"] >= 1 and res["statuses"].get("503", 0) >= 8, res["statuses"]
    assert health["finished_late"] == 0 and health["refused_expected_wait"] >= 8, health
    assert wall < 15, wall
