#!/usr/bin/env python
"""Speed benchmarks. Prints figures, writes bench/results/<date>_<device>.json, and regenerates
BENCHMARKS.md from every results file.

    python scripts/bench.py                       # CPU (and CUDA when present), default sizes
    python scripts/bench.py --sizes 256 512 --tiled 0 --no-training
    python scripts/bench.py --report              # only rebuild BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet import benchmark as B  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--tiled", type=int, default=4096, help="side of the tiled run (0: skip)")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, plus cuda when present"
    )
    p.add_argument(
        "--checkpoint", default=None, help="time a trained checkpoint (default: random full model)"
    )
    p.add_argument("--no-training", action="store_true")
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--vgg-weights", default="imagenet", choices=["imagenet", "random"])
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--report", action="store_true", help="only regenerate the markdown")
    p.add_argument("--notes", default="", help="free text stored with the run")
    args = p.parse_args(argv)

    if not args.report:
        import torch

        devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        results = {"env": B.environment(), "inference": [], "training": [], "notes": args.notes}
        for dev in devices:
            print(f"== inference on {dev}")
            results["inference"] += B.bench_inference(
                args.sizes, dev, args.repeats, 1, args.tiled, args.tile, args.checkpoint,
                onnx=not args.no_onnx, peer=not args.no_peer,
            )  # fmt: skip
            if dev == "cuda":
                results["inference"] += B.bench_inference(
                    args.sizes, dev, args.repeats, 8, 0, args.tile, args.checkpoint, narrow=False
                )
            if not args.no_training:
                size = 256 if dev == "cuda" else 128
                batch = 16 if dev == "cuda" else 4
                print(f"== training on {dev}")
                results["training"] += B.bench_training(
                    size, batch, args.train_steps, dev, args.vgg_weights
                )
        path = B.write_results(results, args.results_dir)
        print(f"results: {path}")
    files = sorted(args.results_dir.glob("*.json"))
    quality = sorted(p.parent for p in (ROOT / "bench" / "quality").glob("*/report.md"))
    if files or quality:
        args.markdown.write_text(B.render_markdown(files, quality, ROOT))
        print(f"report: {args.markdown} ({len(files)} run(s), {len(quality)} quality report(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
