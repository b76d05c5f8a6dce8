"""``stylenet-bank`` / ``python -m stylenet.bank``: the styles of a bank.

    stylenet-bank list checkpoints/bank_all.pt
    stylenet-bank info checkpoints/bank_all.pt                       # provenance and history
    stylenet-bank rename checkpoints/bank_all.pt the_scream scream -o bank.pt
    stylenet-bank remove checkpoints/bank_all.pt night_cafe -o bank.pt
    stylenet-bank reorder checkpoints/bank_all.pt the_scream starry_night ... -o bank.pt
    stylenet-bank merge bank_a.pt bank_b.pt -o both.pt
    stylenet-bank thumbnail checkpoints/bank_all.pt starry_night -o starry.jpg
    stylenet-bank upgrade old.pt -o new.pt          # an older file: add thumbnails, format 2
    stylenet-bank add checkpoints/bank_all.pt my_painting.jpg -o bank.pt   # a predicted row
    stylenet-bank drop-predictor checkpoints/bank_all.pt -o bank.pt      # the styles alone
    stylenet-bank copy-predictor student.pt --from old-student.pt -o bank.pt   # keep a predictor

Edits write to ``-o NEW.pt``, or replace the bank with ``--in-place`` (the old file is kept as
``<bank>.pt.bak``). The outputs of every kept style are unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stylenet.cli import flag_names, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stylenet-bank",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def edit(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("bank", help="exported checkpoint (.pt)")
        s.add_argument("--output", "-o", help="write the result to this new file")
        s.add_argument(
            "--in-place", action="store_true", help="replace the bank (kept as <bank>.pt.bak)"
        )
        s.add_argument(
            "--overwrite", action="store_true", help="allow -o to replace an existing file"
        )
        return s

    s = sub.add_parser("list", help="the styles, one per line: index, name, when added")
    s.add_argument("bank", help="exported checkpoint (.pt)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s = sub.add_parser("info", help="model, provenance and history of the bank (JSON)")
    s.add_argument("bank", help="exported checkpoint (.pt)")
    s = edit("rename", "rename one style")
    s.add_argument("old", help="current name or index")
    s.add_argument("new", help="new name")
    s = edit("remove", "remove styles (their rows)")
    s.add_argument("styles", nargs="+", help="names or indices to remove")
    edit("upgrade", "bring an older checkpoint to the current format (adds style thumbnails)")
    s = edit("add", "add a painting as a new style, with the row the bank's style predictor gives")
    s.add_argument("painting", help="image file")
    s.add_argument("--name", help="the new style's name (default: the file's name)")
    edit("drop-predictor", "remove the style predictor (the styles are untouched)")
    s = edit(
        "copy-predictor",
        "give the bank another file's style predictor (made for the same "
        "norm widths, e.g. the file a continued training started from)",
    )
    s.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the checkpoint whose predictor to copy")  # fmt: skip
    s = edit("reorder", "put the styles in a new order")
    s.add_argument("order", nargs="+", help="every style once, names or indices, in the new order")
    s = sub.add_parser("merge", help="one bank from two with identical shared weights",
                       description="one bank from two with identical shared weights")  # fmt: skip
    s.add_argument("bank", help="first bank (its styles come first)")
    s.add_argument("other", help="second bank")
    s.add_argument("--output", "-o", required=True, help="the merged bank (a new file)")
    s.add_argument("--overwrite", action="store_true", help="allow replacing an existing output")
    s = sub.add_parser("thumbnail", help="write the stored thumbnail of one style (JPEG)")
    s.add_argument("bank", help="exported checkpoint (.pt)")
    s.add_argument("style", help="name or index")
    s.add_argument("--output", "-o", required=True, help="JPEG file to write")
    s.add_argument("--overwrite", action="store_true", help="allow replacing an existing output")
    return p


def _destination(args: argparse.Namespace) -> tuple[Path, bool]:
    from stylenet.errors import OptionError

    bank = Path(args.bank)
    if getattr(args, "in_place", False):
        if args.output:
            raise OptionError("give either -o or --in-place, not both", option="in_place")
        return bank, True
    if not args.output:
        raise OptionError(
            f"say where the result goes: -o NEW.pt, or --in-place to replace {bank} (kept as .bak)",
            option="output",
        )
    return Path(args.output), bool(args.overwrite)


def _body(args: argparse.Namespace) -> int:
    from stylenet.checkpoints import bank as B
    from stylenet.checkpoints.format import read_checkpoint, save_checkpoint, thumbnail_bytes
    from stylenet.errors import BankError
    from stylenet.io.files import atomic_write, check_output, check_writable_dir, same_file
    from stylenet.nn.mix import style_index

    ckpt = read_checkpoint(args.bank)
    if args.action == "list":
        rows = B.describe(ckpt)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['index']}\t{r['name']}\t{r['added']}")
        return 0
    if args.action == "info":
        info = {k: ckpt.get(k) for k in ("format_version", "stylenet_version", "created", "model_args",
                                          "style_names", "trained_steps", "run_id", "history")}  # fmt: skip
        pred = ckpt.get("predictor")
        info["predictor"] = (
            {"args": pred["args"], "trained_steps": pred.get("trained_steps"),
             "trained_on": {k: v for k, v in (pred.get("trained_on") or {}).items() if k != "train_config"}}
            if pred else "none: only the bank's own styles; image files cannot be styles"
        )  # fmt: skip
        print(json.dumps(info, indent=2, default=str))
        return 0
    if args.action == "thumbnail":
        data = thumbnail_bytes(ckpt, style_index(args.style, ckpt["style_names"]))
        if data is None:
            raise BankError(
                f"{args.bank} stores no thumbnail for {args.style!r} (an older checkpoint)"
            )
        out = Path(args.output)
        check_output(Path(args.bank), out, args.overwrite)
        atomic_write(out, lambda tmp: tmp.write_bytes(data))
        print(out)
        return 0
    if args.action == "merge":
        other = read_checkpoint(args.other)
        out = Path(args.output)
        if same_file(out, Path(args.bank)) or same_file(out, Path(args.other)):
            raise BankError("the merged bank must be a new file, not one of its inputs")
        check_output(Path(args.other), out, args.overwrite)
        result = B.merge(ckpt, other, Path(args.bank).name, Path(args.other).name)
        save_checkpoint(result, out, overwrite=args.overwrite)
    else:
        out, overwrite = _destination(args)
        if args.in_place:
            check_writable_dir(out.parent)
        else:
            check_output(Path(args.bank), out, overwrite)
        if args.action == "upgrade":
            result, missing = B.upgrade(ckpt)
            if missing:
                print(
                    f"note: no painting found for {', '.join(missing)}: no thumbnail",
                    file=sys.stderr,
                )
        elif args.action == "rename":
            result = B.rename(ckpt, args.old, args.new)
        elif args.action == "remove":
            result = B.remove(ckpt, args.styles)
        elif args.action == "add":
            result = _add_predicted(ckpt, args)
        elif args.action == "drop-predictor":
            result = B.drop_predictor(ckpt)
        elif args.action == "copy-predictor":
            from stylenet.io.files import sha256_file

            src = args.source
            result = B.copy_predictor(ckpt, read_checkpoint(src), Path(src).name, sha256_file(src))
        else:
            result = B.reorder(ckpt, args.order)
        save_checkpoint(result, out, overwrite=overwrite)
    print(f"{out}: " + ", ".join(f"{i}:{n}" for i, n in enumerate(result["style_names"])))
    return 0


def _add_predicted(ckpt: dict, args: argparse.Namespace) -> dict:
    """The painting's predicted row stored as a new style (instant; ``stylenet-train
    style=<painting> finetune.from=<bank>`` trains a better one from the same start)."""
    import torch

    from stylenet.checkpoints import bank as B
    from stylenet.checkpoints.format import (
        make_thumbnail,
        network_from_checkpoint,
        predictor_from_checkpoint,
    )
    from stylenet.errors import BankError
    from stylenet.inference.predicted import StyleImages
    from stylenet.runtime.hydra import _safe

    net = network_from_checkpoint(ckpt, args.bank)
    predictor = predictor_from_checkpoint(ckpt, net, args.bank)
    if predictor is None:
        raise BankError(
            f"{args.bank} has no style predictor: grow the painting as a row instead "
            f"(stylenet-train style={args.painting} finetune.from={args.bank})"
        )
    images = StyleImages(predictor, torch.device("cpu"), source=f"checkpoint {args.bank}")
    row = images.rows_for_file(args.painting)
    name = args.name or _safe(Path(args.painting).stem)
    return B.add_row(ckpt, name, row, make_thumbnail(args.painting),
                     {"event": "added from the style predictor", "painting": Path(args.painting).name})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = flag_names(parser)
    names.update({"output": "--output", "in_place": "--in-place"})
    return run_command(lambda: _body(args), names)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
