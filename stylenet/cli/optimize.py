"""``stylenet-optimize``: per-image optimization (Gatys et al.) from Hydra overrides.

    stylenet-optimize content=photo.jpg style=starry_night
    stylenet-optimize --multirun content=photo.jpg style=starry_night loss.style_weight=1e3,1e4,1e5

The config is ``configs/optimize/optimize.yaml``; ``--help`` lists its keys.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from stylenet.cli import hydra_main, run_command


def run_optimize(cfg: DictConfig) -> int:
    from stylenet.errors import OutputExistsError
    from stylenet.optimization.run import run

    def body() -> int:
        summary = run(cfg)
        losses = ", ".join(f"{k}={v:.4g}" for k, v in summary["losses"].items() if "/" not in k)
        print(f"result: {summary['result']}  ({summary['steps']} steps; {losses})")
        return 0

    return run_command(body, hints={OutputExistsError: "pass overwrite=true to replace it"})


def main() -> int:
    from stylenet.runtime.hydra import CONFIG_DIR

    return hydra_main(CONFIG_DIR / "optimize", "optimize", run_optimize)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
