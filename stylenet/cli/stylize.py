"""``stylenet-stylize``: apply a style (or a mix) to an image, a folder or a video."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from stylenet.cli import argparse_main
from stylenet.errors import OptionError


class TqdmReporter:
    """Progress bars and messages on stderr, kept apart from each other by tqdm."""

    def note(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"note: {msg}", file=sys.stderr)

    def problem(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"error: {msg}", file=sys.stderr)

    def bar(self, total, desc, unit):  # noqa: ANN001, ANN201
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


class TileProgress:
    """A bar over the tiles of one large image (only when there are several)."""

    def __init__(self, rep: TqdmReporter) -> None:
        self.rep = rep
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if total < 4:
            return
        if self.bar is None:
            self.bar = self.rep.bar(total, "tiles", "tile")
        self.bar.update(1)
        if done == total:
            self.bar.close()
            self.bar = None


def build_parser() -> argparse.ArgumentParser:
    from stylenet.inference.stylizer import (
        DEFAULT_MAX_SIZE,
        DEFAULT_TILE_OVERLAP,
        STROKE_SCALE_RANGE,
    )

    p = argparse.ArgumentParser(
        prog="stylenet-stylize",
        description="Apply a learned style (or a mix of styles) to an image, a folder or a video.",
    )
    p.add_argument(
        "--checkpoint", "-c", required=True, help="exported checkpoint (checkpoints/<name>.pt)"
    )
    p.add_argument(
        "--list-styles", action="store_true", help="print the checkpoint's styles and exit"
    )
    p.add_argument("--input", "-i", help="image, folder (recursive) or video")
    p.add_argument(
        "--output", "-o", help="output file (image/video) or folder (a trailing / makes one)"
    )
    p.add_argument(
        "--style",
        "-s",
        default="0",
        help="name, index, or mix 'a=0.7,b=0.3' (shares normalised); an image file is a style "
        "too when the checkpoint has a style predictor ('starry_night=0.5,my.jpg=0.5'); "
        "default: style 0",
    )
    p.add_argument(
        "--strength", type=float, default=1.0, help="0..1: 0 the photo, 1 full style (pixel blend)"
    )
    p.add_argument(
        "--preserve-color",
        action="store_true",
        help="keep the photo's colours (luminance transfer)",
    )
    p.add_argument(
        "--palette",
        type=float,
        default=0.0,
        help="0..1: move the colours towards the painting's (1: its palette; The Scream dark "
        "and orange, a dark texture dark); default 0",
    )
    p.add_argument(
        "--mask",
        help="greyscale mask of the image's shape: --style where white, --mask-style where black",
    )
    p.add_argument("--mask-style", help="style spec used where the mask is black (needs --mask)")
    p.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help=f"cap the longer side in px (default {DEFAULT_MAX_SIZE}; 0: native size)",
    )
    lo, hi = STROKE_SCALE_RANGE
    p.add_argument(
        "--stroke-scale",
        type=float,
        default=1.0,
        help=f"brush-stroke size, {lo:g}..{hi:g}: >1 larger strokes (stylize smaller, resize back)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=0,
        help="stylize in overlapping tiles of this size (0: only when memory needs it)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help="pixels shared by neighbouring tiles (0..1024)",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        help="most memory one image may use, e.g. 2G (default: half of what is free); larger images are tiled",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to run (auto: CUDA if present)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 on GPUs and AMX CPUs, fp32 otherwise",
    )
    p.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "on", "off"],
        help="torch.compile per input shape (auto: where shapes repeat: folders, videos)",
    )
    p.add_argument(
        "--temporal",
        type=float,
        default=None,
        help="video: 0..1, steady the texture where the scene is still (default 0.8; 0: off)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never an input)"
    )
    p.add_argument(
        "--ext", default=None, help="output extension for folder runs, e.g. jpg (default: keep)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="folder runs: same-size images per forward pass (default: 8 on GPU, 1 on CPU)",
    )
    p.add_argument(
        "--quality",
        type=int,
        default=95,
        help="JPEG/WebP quality, 1..100 (JPEGs keep full colour resolution: 4:4:4 chroma)",
    )
    return p  # fmt: skip


def _check_numbers(args: argparse.Namespace) -> int | None:
    if not 1 <= args.quality <= 100:
        raise OptionError(f"must be within 1..100, got {args.quality}", option="quality")
    if args.batch_size < 0 or args.batch_size > 256:
        raise OptionError(
            f"must be within 0..256 (0: automatic), got {args.batch_size}", option="batch_size"
        )
    if args.temporal is not None and not 0.0 <= args.temporal < 1.0:
        raise OptionError(
            f"must be within 0..1 (1 excluded), got {args.temporal}", option="temporal"
        )
    if args.memory_budget is None:
        return None
    from stylenet.inference.memory import parse_size

    try:
        return parse_size(args.memory_budget)
    except ValueError as e:
        raise OptionError(str(e), option="memory_budget") from e


def _body(args: argparse.Namespace) -> int:
    from stylenet.checkpoints.format import read_checkpoint
    from stylenet.errors import ImageReadError, OutputError
    from stylenet.inference.media import (
        FolderRun,
        resolve_image_output,
        stylize_file,
        stylize_video,
    )
    from stylenet.inference.stylizer import StylizeOptions, Stylizer
    from stylenet.io.images import IMAGE_EXTENSIONS, load_image
    from stylenet.io.video import is_video

    if args.list_styles:
        ckpt = read_checkpoint(args.checkpoint)
        for i, n in enumerate(ckpt["style_names"]):
            print(f"{i}\t{n}")
        return 0
    if not args.input or not args.output:
        print("error: --input and --output are required (or --list-styles)", file=sys.stderr)
        return 2
    budget = _check_numbers(args)
    inp, out = Path(args.input), Path(args.output)
    if not inp.exists():
        raise ImageReadError(f"input {inp} does not exist")
    mask = load_image(args.mask) if args.mask else None
    opts = StylizeOptions(
        style=args.style, strength=args.strength, preserve_color=args.preserve_color,
        palette=args.palette, mask=mask, mask_style=args.mask_style, max_size=args.max_size,
        stroke_scale=args.stroke_scale, tile=args.tile, tile_overlap=args.tile_overlap,
    )  # fmt: skip
    opts.check()  # every option before the checkpoint is even read
    st = Stylizer(args.checkpoint, device=args.device, precision=args.precision,
                  compile=args.compile, memory_budget=budget)  # fmt: skip
    # Style specs checked (and style images predicted) before any work.
    st.choose(opts.style, opts.mask_style)
    if opts.palette:
        st.palette_target(opts.style, mask_style=opts.mask_style)
    rep = TqdmReporter()
    if inp.is_dir():
        if (
            not out.is_dir()
            and not args.output.endswith(("/", os.sep))
            and (out.suffix.lower() in IMAGE_EXTENSIONS or is_video(out))
        ):
            raise OutputError(
                f"the input {inp} is a folder, so the output is a folder too, but {out} looks like "
                f"a file name; give a folder (end it with / to create one named {out.name})"
            )
        res = FolderRun(st, opts, inp, out, overwrite=args.overwrite, ext=args.ext,
                        batch_size=args.batch_size, quality=args.quality, reporter=rep).run()  # fmt: skip
        print(
            f"{res.done} stylized, {res.skipped} skipped (exist), {len(res.failed)} failed -> {out}"
        )
        if res.failed:
            print(f"error: {len(res.failed)} file(s) failed (listed above)", file=sys.stderr)
            return 1
        return 0
    if is_video(inp):
        from stylenet.inference.temporal import DEFAULT_STRENGTH

        temporal = DEFAULT_STRENGTH if args.temporal is None else args.temporal
        v = stylize_video(st, opts, inp, out, overwrite=args.overwrite, reporter=rep,
                          temporal=temporal)  # fmt: skip
        print(f"{out}  ({v.frames} frames, {v.fps:g} fps{', audio kept' if v.has_audio else ''})")
        return 0
    target = resolve_image_output(inp, out, args.output)
    t0 = time.perf_counter()

    st.progress = TileProgress(rep)
    res, notes = stylize_file(st, opts, inp, target, overwrite=args.overwrite, quality=args.quality)
    for n in notes:
        rep.note(n)
    print(f"{target}  ({res.width}x{res.height}, {time.perf_counter() - t0:.2f} s)")
    return 0


main = argparse_main(build_parser, _body)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
