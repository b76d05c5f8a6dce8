#!/usr/bin/env python
"""Regenerate docs/images/hero.png: a photo, two styles, a blend and a masked result.

    python scripts/readme_figures.py --checkpoint checkpoints/bank_all.pt \
        --photo stylenet/assets/content/gcompris_worldanimals_lemur.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="checkpoints/bank_all.pt")
    p.add_argument("--photo", default="stylenet/assets/content/gcompris_worldanimals_lemur.jpg")
    p.add_argument("--a", default="starry_night")
    p.add_argument("--b", default="the_scream")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--output", default="docs/images/hero.png")
    args = p.parse_args()

    from PIL import Image
    from stylenet.media import save_image_atomic

    from stylenet.data import load_image
    from stylenet.inference import Stylizer
    from stylenet.sheets import contact_sheet

    st = Stylizer(args.checkpoint, precision="fp32")
    photo = load_image(args.photo)
    photo.thumbnail((args.size, args.size), Image.LANCZOS)
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (0, 0, photo.width // 2, photo.height))
    kw = {"max_size": 0}
    images = [
        photo,
        st.stylize(photo, style=args.a, **kw),
        st.stylize(photo, style=args.b, **kw),
        st.stylize(photo, style=f"{args.a}=0.5,{args.b}=0.5", **kw),
        st.stylize(photo, style=args.a, mask=mask, mask_style=args.b, **kw),
    ]
    labels = ["photo", args.a, args.b, "50/50 blend", f"mask: {args.a} | {args.b}"]
    sheet = contact_sheet(images, labels, tile=args.size // 1)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(sheet, Path(args.output))
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
