"""``stylenet-export``: a checkpoint to ONNX, TorchScript or safetensors (+ a JSON sidecar)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stylenet.cli import argparse_main


def build_parser() -> argparse.ArgumentParser:
    from stylenet.checkpoints.export import FORMATS

    p = argparse.ArgumentParser(
        prog="stylenet-export",
        description="Export a trained checkpoint; the result is checked against PyTorch.",
    )
    p.add_argument(
        "--checkpoint", "-c", required=True, help="exported checkpoint (checkpoints/<name>.pt)"
    )
    p.add_argument(
        "--format",
        "-f",
        required=True,
        choices=list(FORMATS),
        help="onnx (opset 17, dynamic size), torchscript or safetensors",
    )
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="file to write; ONNX and safetensors also get <output>.json",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p  # fmt: skip


def _body(args: argparse.Namespace) -> int:
    from stylenet.checkpoints.export import export_checkpoint, sidecar_path
    from stylenet.io.files import check_output

    out = Path(args.output)
    check_output(Path(args.checkpoint), out, args.overwrite)
    if args.format != "torchscript":
        check_output(Path(args.checkpoint), sidecar_path(out), args.overwrite)
    info = export_checkpoint(args.checkpoint, args.format, out)
    print(json.dumps(info, indent=2))
    return 0


main = argparse_main(build_parser, _body)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
