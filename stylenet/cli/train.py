"""``stylenet-train``: train a network (or a bank, or grow one) from Hydra overrides.

    stylenet-train style=starry_night
    stylenet-train style=bank_all data.root=/data/coco/train2014
    stylenet-train style=my_painting finetune.from=checkpoints/bank_all.pt
    stylenet-train --config-dir my_configs style=my_painting     # your own styles and banks

``--help`` lists the config groups and their options (Hydra's help); ``--cfg job`` prints the
composed config without training.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from stylenet.cli import hydra_main, run_command


def report(res) -> None:  # noqa: ANN001
    m = res.metrics
    losses = ", ".join(
        f"{k.split('/', 1)[1]}={m[k]:.4g}"
        for k in ("train/loss", "train/content_loss", "train/style_loss", "train/tv_loss")
        if k in m
    )
    print(f"run directory:   {res.run_dir}")
    print(f"steps:           {res.global_step}  ({res.wall_time_s:.0f} s)")
    print(f"final losses:    {losses}")
    if res.sample_grid:
        print(f"sample grid:     {res.sample_grid}")
    if res.export_path:
        print(f"checkpoint:      {res.export_path}")
    for n in res.notes:
        print(f"note:            {n}")
    print(f"tensorboard:     tensorboard --logdir {res.run_dir.parent}")


def run_training(cfg: DictConfig) -> int:
    """Train from a composed config under the error policy (what the Hydra main calls)."""
    from stylenet.training.build import CONFIG_KEYS
    from stylenet.training.run import train

    def body() -> int:
        report(train(cfg))
        return 0

    return run_command(body, CONFIG_KEYS, handle_signals=False)


def main() -> int:
    from stylenet.runtime.hydra import CONFIG_DIR

    return hydra_main(CONFIG_DIR, "train", run_training)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
