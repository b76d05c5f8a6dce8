"""The HTTP API and the web page (FastAPI).

Endpoints: ``GET /`` (the page), ``GET /healthz``, ``GET /v1/styles``,
``GET /v1/styles/{index}/thumbnail``, ``POST /v1/stylize`` (multipart: ``image`` and the
options of the command line; ``style_image``, a painting as the style, when the checkpoint has a
style predictor: the spec names it ``upload``, e.g. ``starry_night=0.5,upload=0.5``), ``GET /docs`` and ``/openapi.json``. Every error is a JSON body
``{"error": "<one clear message>", "status": <code>}``: 400 (not an image, a corrupt one, an
unknown style: the message lists the valid names), 413 (upload over the limit, or more pixels
than the limit), 422 (an option out of its range), 503 (queue full, not started within the
timeout, or shutting down; with ``Retry-After``), 504 (its pass started but did not finish within
the timeout). Nothing is written to disk but the
temporary spool of large uploads, which is removed with the request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylenet.checkpoints.format import read_checkpoint, thumbnail_bytes
from stylenet.errors import HTTPProblem, OptionError, StylenetError, StyleSpecError
from stylenet.inference.media import shrink_for
from stylenet.inference.memory import fmt_bytes
from stylenet.inference.stylizer import STROKE_SCALE_RANGE, StylizeOptions, Stylizer
from stylenet.io.images import image_to_tensor, to_rgb
from stylenet.nn.mix import shown
from stylenet.nn.network import MIN_SIZE
from stylenet.serve.config import ServeConfig
from stylenet.serve.engine import ClientGone, Engine, Expired, Job, QueueFull, ShuttingDown

log = logging.getLogger(__name__)

# How a request's style spec names its uploaded style image (``style_image``).
UPLOAD_TOKEN = "upload"
# The longest style spec a request may send: a mix of every style of a 100-style bank with
# 30-character names and shares is about 4 kB.
MAX_STYLE_CHARS = 4096

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"),
           "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}  # fmt: skip


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (by its declared
    Content-Length up front, or as soon as a chunked body passes the limit).

    A chunked body is cut off where it passes the limit; whatever the application then makes of
    the truncated body (the form parser answers 400) is replaced by the 413."""

    def __init__(self, app, limit: int) -> None:  # noqa: ANN001
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        msg = f"the upload is larger than the limit of {fmt_bytes(self.limit)}"
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                return await problem(413, msg)(scope, receive, send)
        seen = 0
        over = False
        answered = False

        async def counting_receive():  # noqa: ANN202
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise HTTPProblem(413, msg)
            return message

        async def guarded_send(message) -> None:  # noqa: ANN001
            nonlocal answered
            if not over:
                return await send(message)
            if not answered:
                answered = True
                await problem(413, msg)(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except HTTPProblem as e:
            if not answered:
                answered = True
                await problem(e.status, e.message)(scope, receive, send)


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image, with the pixel limit checked from the header before decoding."""
    if not data:
        raise HTTPProblem(400, "the image is empty")
    try:
        im = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise HTTPProblem(400, "the upload is not an image (JPEG, PNG, WebP, ...)") from None
    except Image.DecompressionBombError:
        raise HTTPProblem(413, f"the image has more than {max_pixels / 1e6:g} megapixels") from None
    w, h = im.size
    if w * h > max_pixels:
        raise HTTPProblem(413, f"the image is {w}x{h}, more than {max_pixels / 1e6:g} megapixels")
    if min(w, h) < MIN_SIZE:
        raise HTTPProblem(400, f"the image is {w}x{h}; the minimum is {MIN_SIZE}x{MIN_SIZE}")
    try:
        im.load()
        return to_rgb(im)
    except (OSError, ValueError, SyntaxError) as e:
        raise HTTPProblem(400, f"the image is corrupt or truncated ({type(e).__name__})") from None


def create_app(cfg: ServeConfig, stylizer: Stylizer | None = None) -> FastAPI:
    """The application; ``stylizer`` lets tests pass a network directly."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        st = stylizer or Stylizer(cfg.checkpoint, device=cfg.device, precision=cfg.precision,
                                  compile=cfg.compile, memory_budget=cfg.memory_budget)  # fmt: skip
        st.expect(None)  # an open-ended stream of requests
        ckpt = read_checkpoint(cfg.checkpoint) if cfg.checkpoint else {}
        state.update(st=st, ckpt=ckpt, engine=Engine(st, cfg.max_queue, cfg.max_batch, timeout_s=cfg.timeout_s),
                     started=time.time())  # fmt: skip
        yield
        # Graceful shutdown: uvicorn has stopped taking connections; finish what is queued.
        await run_in_threadpool(state["engine"].close, 10.0)

    app = FastAPI(
        title="stylenet",
        version=_version(),
        summary="Feed-forward neural style transfer: apply a trained bank's styles and mixes.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=cfg.max_upload)
    static = resources.files("stylenet.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        return problem(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own errors (404, 405, a form it cannot parse, too many fields) in the
        # documented format too.
        return problem(exc.status_code, str(exc.detail)[:200], getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug: its traceback goes to the server's log, the client gets a JSON 500.
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return problem(500, "internal server error (logged on the server)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "query"))
        return problem(422, f"{where}: {first.get('msg', 'invalid value')}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/healthz", summary="Liveness and load")
    async def healthz() -> dict[str, Any]:
        st: Stylizer = state["st"]
        eng: Engine = state["engine"]
        es = eng.stats
        wait = eng.expected_wait_s()
        per = es.seconds_per_megapixel
        plan = eng.planning_seconds_per_megapixel
        return {"status": "ok", "device": str(st.device), "precision": st.dtype_name,
                "styles": len(st.style_names), "queue": eng.depth, "max_queue": eng.max_queue,
                "timeout_s": eng.timeout_s, "images": es.images,
                "ms_per_image": round(es.seconds_per_image * 1000, 1),
                "ms_per_megapixel": round(per * 1000, 1) if per is not None else None,
                "planning_ms_per_megapixel": round(plan * 1000, 1) if plan is not None else None,
                "expected_wait_s": round(wait, 2) if wait is not None else None,
                "refused_queue_full": es.rejected, "refused_expected_wait": es.refused_wait,
                "dropped_expired": es.expired, "dropped_client_gone": es.client_gone,
                "finished_late": es.late}  # fmt: skip

    @app.get("/v1/styles", summary="The bank's styles, in row order")
    async def styles() -> dict[str, Any]:
        st: Stylizer = state["st"]
        ckpt = state["ckpt"]
        return {
            "styles": [
                {"index": i, "name": n,
                 "thumbnail_url": f"/v1/styles/{i}/thumbnail" if thumbnail_bytes(ckpt, i) else None}
                for i, n in enumerate(st.style_names)
            ],
            # Whether a painting may be sent as the style (style_image, named "upload").
            "predictor": st.has_predictor,
            "defaults": {"max_size": cfg.default_size, "max_size_limit": cfg.max_size,
                         "stroke_scale_range": list(STROKE_SCALE_RANGE)},
        }  # fmt: skip

    @app.get("/v1/styles/{index}/thumbnail", summary="A style's painting, small (JPEG)")
    async def thumbnail(index: int) -> Response:
        ckpt = state["ckpt"]
        data = thumbnail_bytes(ckpt, index) if 0 <= index < len(state["st"].style_names) else None
        if data is None:
            raise HTTPProblem(404, f"no thumbnail for style {index}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post(
        "/v1/stylize",
        summary="Stylize an image",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
    )
    async def stylize(
        request: Request,
        image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, WebP, ...)")],
        style: Annotated[
            str, Form(description="name, index, or mix 'a=0.7,b=0.3'; 'upload' is style_image")
        ] = "0",
        style_image: Annotated[
            UploadFile | None,
            File(description="a painting as the style (needs a checkpoint with a predictor)"),
        ] = None,
        strength: Annotated[float, Form(description="0..1: 0 the photo, 1 full style")] = 1.0,
        preserve_color: Annotated[bool, Form(description="keep the photo's colours")] = False,
        palette: Annotated[
            float, Form(description="0..1: move the colours towards the painting's palette")
        ] = 0.0,
        stroke_scale: Annotated[float, Form(description="brush-stroke size, 0.25..8")] = 1.0,
        max_size: Annotated[int | None, Form(description="longer side of the result, px")] = None,
        format: Annotated[str, Form(description="jpeg, png or webp")] = "jpeg",
        quality: Annotated[
            int, Form(description="JPEG/WebP quality, 1..100 (JPEG: 4:4:4 chroma)")
        ] = 90,
    ) -> Response:
        t0 = time.perf_counter()
        st: Stylizer = state["st"]
        eng: Engine = state["engine"]
        if len(style) > MAX_STYLE_CHARS:
            raise HTTPProblem(422, f"style: at most {MAX_STYLE_CHARS} characters, got {len(style)}")
        fmt = FORMATS.get(format.lower())
        if fmt is None:
            raise HTTPProblem(422, f"format: must be jpeg, png or webp, got {shown(format)}")
        if not 1 <= quality <= 100:
            raise HTTPProblem(422, f"quality: must be within 1..100, got {quality}")
        size = cfg.default_size if max_size is None else max_size
        if not MIN_SIZE <= size <= cfg.max_size:
            raise HTTPProblem(
                422, f"max_size: must be within {MIN_SIZE}..{cfg.max_size}, got {size}"
            )
        opts = StylizeOptions(style=style, strength=strength, preserve_color=preserve_color,
                              palette=palette, stroke_scale=stroke_scale, max_size=size)  # fmt: skip
        uploads = None
        if style_image is not None:
            if not st.has_predictor:
                raise HTTPProblem(
                    400, "this server's checkpoint has no style predictor: style_image cannot "
                    f"be used; its styles: {', '.join(st.style_names)}",
                )  # fmt: skip
            style_data = await style_image.read()
            await style_image.close()
            if len(style_data) > cfg.max_upload:
                raise HTTPProblem(413, f"style_image: over {fmt_bytes(cfg.max_upload)}")
            uploads = {UPLOAD_TOKEN: style_data}
            if UPLOAD_TOKEN not in style.replace("=", ",").split(","):
                style = UPLOAD_TOKEN  # the uploaded painting alone
            opts.style = style
        try:
            opts.check()
            if uploads is None:
                mix, extra = st.mix(style), None
            else:
                mix, _, extra = await run_in_threadpool(st.choose, style, None, uploads)
            target = None
            if opts.palette > 0:
                target = await run_in_threadpool(st.palette_target, style, images=uploads)
        except OptionError as e:
            raise HTTPProblem(422, str(e)) from None
        except StyleSpecError as e:
            raise HTTPProblem(400, str(e)) from None
        data = await image.read()
        await image.close()
        img = await run_in_threadpool(decode_upload, data, cfg.max_pixels)
        out_size, _ = st.sizes(img.height, img.width, opts)
        x = image_to_tensor(shrink_for(img, out_size))[None]
        try:
            job = eng.submit(x, mix, opts, extra, palette=target)
        except QueueFull as e:
            raise HTTPProblem(503, str(e), {"Retry-After": str(e.retry_after)}) from None
        except ShuttingDown as e:
            raise HTTPProblem(503, str(e), {"Retry-After": "5"}) from None
        try:
            y = await _wait(job, eng, request, cfg.timeout_s)
        except QueueFull as e:  # dropped before its pass: it could not have been done in time
            raise HTTPProblem(503, str(e), {"Retry-After": str(e.retry_after)}) from None
        except Expired as e:
            raise HTTPProblem(504, str(e)) from None
        except ShuttingDown as e:
            raise HTTPProblem(503, str(e), {"Retry-After": "5"}) from None
        except ClientGone as e:  # nobody reads this answer; 499 as nginx logs it
            raise HTTPProblem(499, str(e)) from None
        except StylenetError as e:
            raise HTTPProblem(422 if isinstance(e, OptionError) else 400, str(e)) from None
        body = await run_in_threadpool(_encode, y, fmt[0], quality)
        total = (time.perf_counter() - t0) * 1000
        queue_ms = (time.perf_counter() - job.enqueued) * 1000 - job.compute_s * 1000
        return Response(
            body,
            media_type=fmt[1],
            headers={
                "X-Stylenet-Compute-Ms": f"{job.compute_s * 1000:.1f}",
                "X-Stylenet-Total-Ms": f"{total:.1f}",
                "X-Stylenet-Size": f"{y.shape[-1]}x{y.shape[-2]}",
                "Server-Timing": f"compute;dur={job.compute_s * 1000:.1f}, queue;dur={max(0.0, queue_ms):.1f}",
                "Access-Control-Expose-Headers": "X-Stylenet-Compute-Ms, X-Stylenet-Total-Ms, X-Stylenet-Size",
            },
        )

    return app


# How often a request waiting for its result checks that its client is still there: a client
# that disconnects (or times out on its side) frees its place in the queue within this time.
DISCONNECT_POLL_S = 0.25


async def _wait(job: Job, eng: Engine, request: Request, timeout_s: float):  # noqa: ANN202
    """The job's result, by the job's deadline (the engine's clock, from its admission). At the
    deadline: ``QueueFull`` (503, retry) when its pass never started, so nothing was computed;
    ``Expired`` (504) when its pass started and overran. A client that disconnects cancels its
    job (the engine drops it unless it is already running)."""
    fut = asyncio.wrap_future(job.future)
    while True:
        left = job.deadline - time.perf_counter()
        if left <= 0:
            if eng.cancel(job):
                wait = eng.expected_wait_s()
                raise QueueFull(max(1, math.ceil(wait or 1.0)), "not started within the "
                                f"timeout of {timeout_s:g} s")  # fmt: skip
            raise Expired(timeout_s)
        done, _ = await asyncio.wait({fut}, timeout=min(DISCONNECT_POLL_S, left))
        if done:
            return fut.result()
        if await request.is_disconnected():
            eng.cancel(job)
            raise ClientGone()


def _encode(y, fmt: str, quality: int) -> bytes:  # noqa: ANN001
    from stylenet.io.files import encode_image
    from stylenet.io.images import tensor_to_image

    return encode_image(tensor_to_image(y), fmt, quality)


def _version() -> str:
    from stylenet import __version__

    return __version__
