"""Command-line glue shared by scripts/ and the console entry points."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

log = logging.getLogger("stylenet")


def user_errors() -> tuple[type[BaseException], ...]:
    from stylenet.checkpoint import CheckpointError
    from stylenet.data import DataError, ImageReadError
    from stylenet.losses import LayerNameError
    from stylenet.styles import StyleError
    from stylenet.train import TrainingError
    from stylenet.weights import VGGWeightsError

    return (
        CheckpointError, DataError, ImageReadError, LayerNameError, StyleError,
        TrainingError, VGGWeightsError,
    )  # fmt: skip


def run_training(cfg: DictConfig) -> int:
    from stylenet.train import train

    try:
        res = train(cfg)
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = res.metrics
    losses = ", ".join(
        f"{k.split('/', 1)[1]}={m[k]:.4g}"
        for k in ("train/loss", "train/content_loss", "train/style_loss", "train/tv_loss")
        if k in m
    )
    print(f"run directory:   {res.run_dir}")
    print(f"steps:           {res.global_step}  ({res.wall_time_s:.0f} s)")
    print(f"final losses:    {losses}")
    if res.sample_grid:
        print(f"sample grid:     {res.sample_grid}")
    if res.export_path:
        print(f"checkpoint:      {res.export_path}")
    print(f"tensorboard:     tensorboard --logdir {res.run_dir.parent}")
    return 0


def _hydra_entry(config_name: str, fn) -> None:  # noqa: ANN001
    import hydra

    import stylenet.config as c

    @hydra.main(version_base="1.3", config_path=str(c.CONFIG_DIR), config_name=config_name)
    def _main(cfg: DictConfig) -> None:
        code = fn(cfg)
        if code:
            sys.exit(code)

    _main()


def train_entry() -> None:
    _hydra_entry("train", run_training)


# ----------------------------------------------------------------------------------- stylize


def _stylize_parser():  # noqa: ANN202
    import argparse

    from stylenet.inference import DEFAULT_MAX_SIZE

    p = argparse.ArgumentParser(
        prog="stylize",
        description="Apply a learned style (or a blend) to an image, a folder or a video.",
    )
    p.add_argument(
        "--checkpoint", "-c", required=True, help="exported checkpoint (checkpoints/<name>.pt)"
    )
    p.add_argument(
        "--list-styles", action="store_true", help="print the checkpoint's styles and exit"
    )
    p.add_argument("--input", "-i", help="image, folder (recursive) or video")
    p.add_argument("--output", "-o", help="output file (image/video) or folder")
    p.add_argument(
        "--style",
        "-s",
        default="0",
        help="name, index, or blend 'a=0.7,b=0.3' (weights normalised); default: style 0",
    )
    p.add_argument(
        "--strength", type=float, default=1.0, help="0: the photo, 1: full style (pixel blend)"
    )
    p.add_argument(
        "--preserve-color",
        action="store_true",
        help="keep the photo's colours (luminance transfer)",
    )
    p.add_argument("--mask", help="greyscale mask: --style where white, --mask-style where black")
    p.add_argument("--mask-style", help="style spec used where the mask is black")
    p.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help=f"cap the longer side (default {DEFAULT_MAX_SIZE}; 0: native size)",
    )
    p.add_argument(
        "--stroke-scale",
        type=float,
        default=1.0,
        help="brush-stroke size: >1 larger strokes (stylize smaller, resize back)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=0,
        help="stylize in overlapping tiles of this size (huge images; 0: off)",
    )
    p.add_argument(
        "--tile-overlap", type=int, default=128, help="pixels shared by neighbouring tiles"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the network (slow first call)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--ext", default=None, help="output extension for folder runs (default: keep)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="folder runs: same-size images per forward pass (default: 8 on GPU, 1 on CPU)",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    return p


def stylize_main(argv: list[str] | None = None) -> int:
    import time
    from pathlib import Path

    from stylenet.checkpoint import CheckpointError, read_checkpoint
    from stylenet.data import IMAGE_EXTENSIONS, ImageReadError, load_image
    from stylenet.inference import ImageTooSmallError, StyleSpecError, StylizeOptions, Stylizer
    from stylenet.media import OutputError, check_output, is_video, save_image_atomic

    args = _stylize_parser().parse_args(argv)
    try:
        if args.list_styles:
            ckpt = read_checkpoint(args.checkpoint)
            for i, n in enumerate(ckpt["style_names"]):
                print(f"{i}\t{n}")
            return 0
        if not args.input or not args.output:
            print("error: --input and --output are required (or --list-styles)", file=sys.stderr)
            return 2
        inp, out = Path(args.input), Path(args.output)
        if not inp.exists():
            print(f"error: input {inp} does not exist", file=sys.stderr)
            return 1
        mask = load_image(args.mask) if args.mask else None
        st = Stylizer(
            args.checkpoint, device=args.device, precision=args.precision, compile=args.compile
        )
        opts = StylizeOptions(
            style=args.style, strength=args.strength, preserve_color=args.preserve_color,
            mask=mask, mask_style=args.mask_style, max_size=args.max_size,
            stroke_scale=args.stroke_scale, tile=args.tile, tile_overlap=args.tile_overlap,
        )  # fmt: skip
        st.weight_map(opts.style, None, None, (1, 1))  # validate specs before any work
        if opts.mask_style is not None:
            st.weights(opts.mask_style)
        if inp.is_dir():
            return _stylize_folder(st, opts, inp, out, args)
        if is_video(inp):
            return _stylize_video(st, opts, inp, out, args)
        if out.suffix.lower() not in IMAGE_EXTENSIONS:
            if out.exists() and out.is_dir():
                out = out / inp.name
            else:
                raise OutputError(f"output {out} has no image extension (e.g. .jpg, .png)")
        check_output(inp, out, args.overwrite)
        t0 = time.perf_counter()
        img = load_image(inp)
        res = st.stylize(img, **opts.__dict__)
        save_image_atomic(res, out, args.quality)
        print(f"{out}  ({res.width}x{res.height}, {time.perf_counter() - t0:.2f} s)")
        return 0
    except (
        CheckpointError,
        ImageReadError,
        StyleSpecError,
        ImageTooSmallError,
        OutputError,
        ValueError,
        RuntimeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _stylize_folder(st, opts, inp, out, args) -> int:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from tqdm import tqdm

    from stylenet.data import (
        ImageReadError,
        image_to_tensor,
        list_images,
        load_image,
        tensor_to_image,
    )
    from stylenet.inference import ImageTooSmallError
    from stylenet.media import OutputError, check_output, save_image_atomic

    files = list_images(inp)
    if not files:
        print(f"error: no images found under {inp}", file=sys.stderr)
        return 1
    if out.resolve() == inp.resolve():
        print("error: output folder is the input folder; choose another", file=sys.stderr)
        return 1
    failed: list[str] = []
    done = skipped = 0
    batch_size = args.batch_size or (8 if st.device.type == "cuda" else 1)

    def target(f):  # noqa: ANN001, ANN202
        rel = f.relative_to(inp)
        if args.ext:
            rel = rel.with_suffix("." + args.ext.lstrip("."))
        return out / rel

    # Decode upcoming images and encode finished ones on worker threads while the network runs;
    # consecutive images of the same size are stylized as one batch.
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = {}
        writes = []
        pending: list = []  # (source, destination, tensor [1, 3, H, W])

        def submit(i):  # noqa: ANN001, ANN202
            if i < len(files):
                loads[i] = pool.submit(load_image, files[i])

        def flush() -> None:
            nonlocal done
            if not pending:
                return
            x = torch.cat([t for _, _, t in pending])
            try:
                y = st.stylize_tensor(x, opts)
            except (ImageTooSmallError, ValueError) as e:
                for f, _, _ in pending:
                    failed.append(f"{f}: {e}")
                    tqdm.write(f"error: {f}: {e}")
                pending.clear()
                return
            for (f, dst, _), yi in zip(pending, y, strict=True):
                writes.append(
                    (f, pool.submit(save_image_atomic, tensor_to_image(yi), dst, args.quality))
                )
                done += 1
            pending.clear()

        for i in range(min(len(files), 2 * batch_size + 1)):
            submit(i)
        nxt = min(len(files), 2 * batch_size + 1)
        for i, f in enumerate(tqdm(files, desc="stylize", unit="img")):
            fut = loads.pop(i)
            submit(nxt)
            nxt += 1
            dst = target(f)
            try:
                check_output(f, dst, args.overwrite)
                t = image_to_tensor(fut.result())[None]
            except OutputError as e:
                if "exists" in str(e):
                    skipped += 1
                    tqdm.write(f"skip: {e}")
                else:
                    failed.append(f"{f}: {e}")
                    tqdm.write(f"error: {e}")
                continue
            except ImageReadError as e:
                failed.append(f"{f}: {e}")
                tqdm.write(f"error: {e}")
                continue
            if pending and (pending[0][2].shape != t.shape or opts.tile):
                flush()
            pending.append((f, dst, t))
            if len(pending) >= batch_size:
                flush()
        flush()
        for f, w in writes:
            try:
                w.result()
            except Exception as e:
                failed.append(f"{f}: write failed: {e}")
                done -= 1
    print(f"{done} stylized, {skipped} skipped (exist), {len(failed)} failed -> {out}")
    if failed:
        print(f"error: {len(failed)} file(s) failed:", file=sys.stderr)
        for m in failed:
            print(f"  {m}", file=sys.stderr)
        return 1
    return 0


def _stylize_video(st, opts, inp, out, args) -> int:  # noqa: ANN001
    import numpy as np
    import torch
    from tqdm import tqdm

    from stylenet.media import VideoWriter, check_output, is_video, probe_video, read_frames

    if not is_video(out):
        print(
            f"error: video output needs a video extension (.mp4, .webm, ...), got {out}",
            file=sys.stderr,
        )
        return 1
    check_output(inp, out, args.overwrite)
    try:
        info = probe_video(inp)
    except Exception as e:
        print(f"error: cannot read video {inp}: {e}", file=sys.stderr)
        return 1
    writer = None
    ok = False
    n = 0
    try:
        for frame in tqdm(read_frames(inp), total=info.frames, desc="frames", unit="frame"):
            x = torch.from_numpy(frame.copy()).permute(2, 0, 1).float().div(255)[None]
            y = st.stylize_tensor(x, opts)[0]
            arr = (y.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            if writer is None:
                writer = VideoWriter(
                    out, (arr.shape[1], arr.shape[0]), info.fps, inp if info.has_audio else None
                )
            writer.write(arr)
            n += 1
        ok = n > 0
    finally:
        if writer is not None:
            writer.close(ok=ok)
    if not ok:
        print(f"error: no frames decoded from {inp}", file=sys.stderr)
        return 1
    print(f"{out}  ({n} frames, {info.fps:g} fps{', audio kept' if info.has_audio else ''})")
    return 0


def stylize_entry() -> None:
    sys.exit(stylize_main())


# ------------------------------------------------------------------------------------ export


def export_main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="export", description="Export a trained checkpoint.")
    p.add_argument("--checkpoint", "-c", required=True)
    p.add_argument("--format", "-f", required=True, choices=["onnx", "torchscript", "safetensors"])
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    from pathlib import Path

    from stylenet.checkpoint import CheckpointError
    from stylenet.export import export_checkpoint

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        print(f"error: output {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    if out.exists() and out.resolve() == Path(args.checkpoint).resolve():
        print("error: output is the input checkpoint", file=sys.stderr)
        return 1
    try:
        info = export_checkpoint(args.checkpoint, args.format, out)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


def export_entry() -> None:
    sys.exit(export_main())
