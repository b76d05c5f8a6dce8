#!/usr/bin/env python
"""Per-image style transfer by optimization (Gatys et al.): see configs/optimize.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import stylenet.config  # noqa: E402,F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="../configs/optimize", config_name="optimize")
def main(cfg: DictConfig) -> None:
    from stylenet.optimize_app import main as run_main

    code = run_main(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
