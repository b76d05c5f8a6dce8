#!/usr/bin/env python
"""Export a checkpoint to ONNX, TorchScript or safetensors. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stylenet.cli import export_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_main())
