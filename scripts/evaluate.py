#!/usr/bin/env python
"""Quality report for a checkpoint on held-out photos (see stylenet/evaluation.py).

    python scripts/evaluate.py --checkpoint checkpoints/bank_all.pt --content-dir held_out/ \
        --output reports/bank_all/ [--styles a,b] [--size 512] [--compare checkpoints/starry_night.pt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", "-c", required=True)
    p.add_argument("--content-dir", required=True, help="held-out photos (not used in training)")
    p.add_argument("--output", "-o", required=True, help="report folder")
    p.add_argument("--styles", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--size", type=int, default=512)
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
    p.add_argument("--device", default="auto")
    p.add_argument("--vgg-weights", default="imagenet", choices=["imagenet", "random"])
    args = p.parse_args(argv)

    from stylenet.checkpoint import CheckpointError
    from stylenet.evaluation import EvalConfig, evaluate_checkpoint, write_report
    from stylenet.inference import StyleSpecError
    from stylenet.weights import VGGWeightsError

    cfg = EvalConfig(size=args.size, gap_photos=args.gap_photos, gap_steps=args.gap_steps,
                     max_photos=args.max_photos, vgg_weights=args.vgg_weights, device=args.device)  # fmt: skip
    try:
        report = evaluate_checkpoint(
            args.checkpoint, args.content_dir,
            [s.strip() for s in args.styles.split(",")] if args.styles else None,
            cfg, args.compare, args.video,
        )  # fmt: skip
    except (CheckpointError, StyleSpecError, VGGWeightsError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    paths = write_report(report, Path(args.output))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
