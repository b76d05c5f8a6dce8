"""The Lightning callbacks around training: sample grids, checkpoints on Ctrl-C/SIGTERM, stopping at
a step's end, the step progress bar and atomic checkpoint files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from torch import Tensor
from torchvision.utils import make_grid

from stylenet.io.files import save_image, save_torch
from stylenet.io.images import tensor_to_image
from stylenet.nn.network import TransformerNet
from stylenet.runtime import signals
from stylenet.training.module import StyleTransferModule


@torch.no_grad()
def stylize_grid(net: TransformerNet, photos: Tensor, pad: int = 2) -> Tensor:
    """Grid image: one row per photo, the photo first, then every style."""
    rows = []
    s = net.num_styles
    for p in photos:
        x = p.unsqueeze(0).expand(s, -1, -1, -1)
        w = torch.eye(s, device=p.device, dtype=p.dtype)
        y = net(x, w).float()
        rows.append(torch.cat([p.unsqueeze(0).float(), y], dim=0))
    return make_grid(torch.cat(rows), nrow=s + 1, padding=pad, pad_value=1.0)


class SampleGridCallback(Callback):
    """Every ``every_n_steps`` (and at the end) write a held-out photos x styles grid (rank 0)."""

    def __init__(self, photos: Tensor, every_n_steps: int = 200, out_dir: str | Path | None = None):
        self.photos = photos
        self.every = int(every_n_steps)
        self.out_dir = Path(out_dir) if out_dir else None
        self.last_path: Path | None = None
        self._last_step = -1

    def _write(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not len(self.photos) or not trainer.is_global_zero:
            return
        self._last_step = step
        was_training = module.net.training
        module.net.eval()
        photos = self.photos.to(module.device)
        with torch.autocast(module.device.type, enabled=False):
            # A module may draw its own grid (a predictor: photos x held-out style images).
            own = getattr(module, "sample_grid", None)
            grid = (own(photos) if own else stylize_grid(module.net, photos)).clamp(0, 1).cpu()
        module.net.train(was_training)
        for lg in trainer.loggers:
            exp = getattr(lg, "experiment", None)
            if exp is not None and hasattr(exp, "add_image"):
                exp.add_image("samples/grid", grid, global_step=step)
        if self.out_dir is not None:
            path = self.out_dir / f"grid_step{step:06d}.png"
            save_image(tensor_to_image(grid), path)
            self.last_path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.every > 0 and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._write(trainer, pl_module)


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM, save ``last.ckpt`` where the run stands, so rerunning the same
    command resumes from the step it reached (not from the last periodic checkpoint)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.step: int | None = None

    def on_exception(self, trainer, pl_module, exception) -> None:  # noqa: ANN001
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        self.step = int(trainer.global_step)
        pl_module.interrupted_step = self.step
        if self.step > 0:
            trainer.save_checkpoint(str(self.path))


class StopAtStepEnd(Callback):
    """Turns a Ctrl-C recorded by ``stylenet.runtime.signals`` into ``KeyboardInterrupt`` at the end of a
    training step, where Lightning's own interrupt handling (and ``InterruptCheckpoint``) takes
    over. A ``KeyboardInterrupt`` raised wherever the signal lands can fire inside a finaliser or
    a C callback and be lost, leaving the run training on."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        signals.check()


class StepProgressBar(TQDMProgressBar):
    """One bar over the optimizer steps of the whole run (``0..trainer.max_steps``), with an ETA.

    Lightning's bar counts the batches of each epoch; an epoch here is a long concatenation of
    shuffled passes (``LongEpochSampler``), and after a resume mid-epoch that bar showed neither
    the run's total nor an ETA. This one starts at the resumed step and never resets."""

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        bar = self.train_progress_bar
        # A resumed run starts mid-epoch, where Lightning calls no epoch-start hook: the bar is
        # set up here, once.
        bar.reset(total=int(trainer.max_steps))
        bar.initial = int(trainer.global_step)
        bar.n = int(trainer.global_step)
        bar.set_description("train")
        bar.refresh()

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # one bar for the whole run: never reset per epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        bar = self.train_progress_bar
        n = int(trainer.global_step)
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.train_progress_bar is not None and not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a run killed mid-save (or a
    full disk) never leaves a truncated ``last.ckpt`` behind."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:  # noqa: ANN001
        save_torch(checkpoint, Path(path))
