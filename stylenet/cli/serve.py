"""``stylenet-serve`` / ``python -m stylenet.serve``: the web page and HTTP API.

    stylenet-serve --checkpoint checkpoints/bank_all.pt            # http://127.0.0.1:8000
    curl -F image=@photo.jpg -F style=starry_night=0.7,the_scream=0.3 \
        http://127.0.0.1:8000/v1/stylize -o out.jpg

Binds 127.0.0.1 unless --host says otherwise. Ctrl-C (or SIGTERM) stops taking requests,
finishes the queued ones and exits.
"""

from __future__ import annotations

import argparse
import sys

from stylenet.cli import argparse_main


def build_parser() -> argparse.ArgumentParser:
    from stylenet.serve.config import ServeConfig

    D = ServeConfig(checkpoint="").__dict__
    p = argparse.ArgumentParser(
        prog="stylenet-serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", "-c", required=True, help="exported checkpoint (checkpoints/<name>.pt)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the network runs"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 on GPUs",
    )
    p.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "on", "off"],
        help="torch.compile per input shape (auto: on CUDA, for shapes that repeat)",
    )
    p.add_argument("--max-upload", default="25M", help="largest upload, e.g. 25M (bigger: 413)")
    p.add_argument(
        "--max-pixels",
        type=float,
        default=D["max_pixels"],
        help="most pixels an upload may decode to (bigger: 413)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=D["max_size"],
        help="largest output side a request may ask for, px",
    )
    p.add_argument(
        "--default-size",
        type=int,
        default=D["default_size"],
        help="output side when a request names none, px",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=D["max_queue"],
        help="requests waiting at most (more: 503 with Retry-After)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=D["max_batch"],
        help="same-size requests run as one batch, at most",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=D["timeout_s"],
        help="seconds a request may wait and run (then 504)",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        help="most memory one batch may use, e.g. 4G (default: half of what is free)",
    )
    return p  # fmt: skip


def _body(args: argparse.Namespace) -> int:
    from stylenet.checkpoints.format import read_checkpoint
    from stylenet.errors import OptionError, StylenetError
    from stylenet.inference.memory import parse_size

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise StylenetError(
            f"the web server needs the serve extra ({e.name} is missing): pip install 'stylenet[serve]'"
        ) from None
    read_checkpoint(args.checkpoint)  # a bad checkpoint is one line, before anything starts
    for name, value, lo, hi in (("port", args.port, 1, 65535), ("queue", args.queue, 1, 10_000),
                                ("batch", args.batch, 1, 256), ("max_size", args.max_size, 16, 16384),
                                ("default_size", args.default_size, 16, args.max_size)):  # fmt: skip
        if not lo <= value <= hi:
            raise OptionError(f"must be within {lo}..{hi}, got {value}", option=name)
    if not 0 < args.timeout <= 3600:
        raise OptionError(f"must be within 0..3600 seconds, got {args.timeout}", option="timeout")
    if not 0 < args.max_pixels <= 1e9:
        raise OptionError(f"must be within 1..1e9, got {args.max_pixels:g}", option="max_pixels")
    sizes = {}
    for name in ("max_upload", "memory_budget"):
        text = getattr(args, name)
        try:
            sizes[name] = parse_size(text) if text is not None else None
        except ValueError as e:
            raise OptionError(str(e), option=name) from None
    upload, budget = sizes["max_upload"], sizes["memory_budget"]
    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    cfg = ServeConfig(
        checkpoint=args.checkpoint, device=args.device, precision=args.precision, compile=args.compile,
        max_upload=upload, max_pixels=int(args.max_pixels), max_size=args.max_size,
        default_size=args.default_size, max_queue=args.queue, max_batch=args.batch,
        timeout_s=args.timeout, memory_budget=budget,
    )  # fmt: skip
    print(f"stylenet serving {args.checkpoint} on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(
        create_app(cfg), host=args.host, port=args.port, log_level="warning",
        timeout_graceful_shutdown=10,
    )  # fmt: skip
    return 0


# uvicorn handles Ctrl-C and SIGTERM itself (graceful shutdown).
main = argparse_main(build_parser, _body, handle_signals=False)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
