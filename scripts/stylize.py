#!/usr/bin/env python
"""Stylize images, folders and videos with an exported checkpoint. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stylenet.cli import stylize_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(stylize_main())
