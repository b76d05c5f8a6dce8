#!/usr/bin/env python
"""Train a style-transfer network: `python scripts/train.py style=starry_night`.

See configs/train.yaml for the groups and keys; any key can be overridden on the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import stylenet.config  # noqa: E402,F401  (registers the config resolvers)
from stylenet.cli import run_training  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    code = run_training(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
