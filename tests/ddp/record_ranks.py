"""A Hydra app that trains like stylenet-train and records, per rank, the style rows and crops it
drew (for tests/test_ddp.py). Lightning's DDP launcher re-runs this file once per extra rank."""

import json
import os
import sys

import hydra
from pytorch_lightning.callbacks import Callback

from stylenet.runtime.hydra import CONFIG_DIR, launch_argv
from stylenet.training.run import train


class Record(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.rows: list[int] = []
        self.crops: list[float] = []

    def on_fit_start(self, trainer, module) -> None:
        draw = module.draw_styles

        def recording(b, device):
            k = draw(b, device)
            self.rows.extend(module._row_index.to(k.device)[k].tolist())
            return k

        module.draw_styles = recording

    def on_train_batch_start(self, trainer, module, batch, idx) -> None:
        self.crops.append(round(float(batch["image"].sum()), 3))

    def on_train_end(self, trainer, module) -> None:
        path = os.path.join(self.out_dir, f"rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump({"rows": self.rows, "crops": self.crops, "world": trainer.world_size}, f)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg) -> None:
    train(cfg, extra_callbacks=[Record(os.environ["RECORD_DIR"])])


if __name__ == "__main__":
    # as every stylenet command does before Hydra composes (the hardware pick, moved keys)
    sys.argv = [sys.argv[0], *launch_argv(sys.argv[1:])[0]]
    main()
