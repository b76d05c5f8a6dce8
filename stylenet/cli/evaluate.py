"""``stylenet-evaluate``: quality report of a checkpoint on held-out photos.

    stylenet-evaluate --checkpoint checkpoints/bank_all.pt --content-dir held_out/ \
        --output reports/bank_all/ [--styles a,b] [--size 512] [--compare checkpoints/x.pt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylenet.cli import flag_names, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stylenet-evaluate",
        description="Quality report of a checkpoint on held-out photos (see stylenet/evaluation.py).",
    )
    p.add_argument("--checkpoint", "-c", required=True, help="exported checkpoint to evaluate")
    p.add_argument("--content-dir", required=True, help="held-out photos (not used in training)")
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="report folder (report.json, report.md, contact_sheet.png)",
    )
    p.add_argument(
        "--styles",
        default=None,
        help="comma-separated subset of the checkpoint's styles (default: all)",
    )
    p.add_argument("--size", type=int, default=512, help="longer side of photos and paintings, px")
    p.add_argument("--max-photos", type=int, default=0, help="use the first N photos (0: all)")
    p.add_argument(
        "--gap-photos", type=int, default=2, help="photos per style for the amortization gap"
    )
    p.add_argument(
        "--gap-steps", type=int, default=300, help="L-BFGS steps of the reference optimization"
    )
    p.add_argument(
        "--compare", default=None, help="another checkpoint (e.g. single-style) to compare"
    )
    p.add_argument("--video", default=None, help="short clip for the flicker measure")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--vgg-weights",
        default="imagenet",
        choices=["imagenet", "random"],
        help="random: tests only",
    )
    return p  # fmt: skip


def _body(args: argparse.Namespace) -> int:
    from stylenet.evaluation import EvalConfig, evaluate_checkpoint, write_report

    cfg = EvalConfig(size=args.size, gap_photos=args.gap_photos, gap_steps=args.gap_steps,
                     max_photos=args.max_photos, vgg_weights=args.vgg_weights, device=args.device)  # fmt: skip
    report = evaluate_checkpoint(
        args.checkpoint, args.content_dir,
        [s.strip() for s in args.styles.split(",")] if args.styles else None,
        cfg, args.compare, args.video,
    )  # fmt: skip
    paths = write_report(report, Path(args.output))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(lambda: _body(args), flag_names(parser))


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
