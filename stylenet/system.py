"""The training system: a LightningModule wiring the network, the perceptual loss and Adam, and
the callbacks around it (sample grids, interrupt checkpoints, atomic checkpoint files)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from torch import Tensor
from torchvision.utils import make_grid

from stylenet import signals
from stylenet.errors import OptionError, TrainingError
from stylenet.files import save_image, save_torch
from stylenet.imaging import tensor_to_image
from stylenet.losses import PerceptualLoss, VGGFeatures
from stylenet.model import TransformerNet
from stylenet.styles import StyleSpec, load_style_image
from stylenet.vgg import DEFAULT_CONTENT_LAYERS, default_layer_weights

log = logging.getLogger(__name__)

VGG_PREFIX = "loss."  # the frozen VGG and the Gram targets live under ``self.loss``
SCHEDULERS = ("constant", "cosine")
# What trains: every weight, or only the gamma/beta rows of the styles being added.
SCOPES = ("all", "new_rows")


class NonFiniteLossError(TrainingError):
    def __init__(self, step: int, terms: Mapping[str, float]) -> None:
        self.step = step
        detail = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"loss is not finite at step {step} ({detail})")


def lr_factor(
    step: int, total: int, scheduler: str, warmup_steps: int, min_lr_ratio: float
) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine decay to
    ``min_lr_ratio`` at ``total`` steps (Loshchilov & Hutter 2017, without restarts)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "cosine" and total > warmup_steps:
        t = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


class StyleTransferModule(pl.LightningModule):
    """Trains ``net`` so its rows ``rows`` reproduce the styles ``styles`` (one spec per row).

    Plain training: one row per style, ``rows`` = 0..S-1. Growing a bank (``stylenet.finetune``)
    passes the bank's names (``row_names``), the rows being trained, how often each is drawn
    (``row_shares``), and ``train_scope="new_rows"`` to train only the new rows' gamma/beta.
    """

    def __init__(
        self,
        styles: Sequence[Mapping[str, Any]],
        model: Mapping[str, int] | None = None,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Mapping[str, float] | None = None,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        vgg_weights: str = "imagenet",
        vgg_weights_path: str | None = None,
        style_size: int = 512,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        channels_last: bool = False,
        row_names: Sequence[str] | None = None,
        rows: Sequence[int] | None = None,
        row_shares: Sequence[float] | None = None,
        train_scope: str = "all",
        nan_check_every: int = 1,
        seed: int = 0,
        vgg_dtype: str = "fp32",
        vgg_pooling: str = "max",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if scheduler not in SCHEDULERS:
            raise OptionError(
                f"must be one of {', '.join(SCHEDULERS)}; got {scheduler!r}", option="scheduler"
            )
        if train_scope not in SCOPES:
            raise OptionError(
                f"must be one of {', '.join(SCOPES)}; got {train_scope!r}", option="train_scope"
            )
        # Loaded checkpoints lack the frozen VGG (dropped on save): allow that when restoring.
        self.strict_loading = False
        self.style_specs = [StyleSpec(**dict(s)) for s in styles]
        self.style_names = list(row_names) if row_names else [s.name for s in self.style_specs]
        self.rows = list(rows) if rows is not None else list(range(len(self.style_specs)))
        if len(self.rows) != len(self.style_specs):
            raise ValueError(f"{len(self.rows)} rows for {len(self.style_specs)} styles")
        model_args = dict(model or {})
        model_args["num_styles"] = len(self.style_names)
        self.net = TransformerNet(**model_args)
        style_layers = dict(style_layers or default_layer_weights())
        vgg = VGGFeatures(
            list(content_layers) + list(style_layers),
            weights=vgg_weights,
            weights_path=vgg_weights_path,
            pooling=vgg_pooling,
        )
        self.loss = PerceptualLoss(
            vgg, content_layers, style_layers, content_weight, style_weight, tv_weight
        )
        images = [load_style_image(s, style_size) for s in self.style_specs]
        self.loss.set_style_targets(images, [s.loss_scale for s in self.style_specs])
        shares = torch.tensor(list(row_shares) if row_shares else [1.0] * len(self.rows))
        self.register_buffer("_row_index", torch.tensor(self.rows), persistent=False)
        self.register_buffer("_row_probs", shares / shares.sum(), persistent=False)
        self._uniform = row_shares is None or len(set(row_shares)) == 1
        self.skipped_images = 0
        self.interrupted_step: int | None = None
        self._nan_flag: Tensor | None = None
        if vgg_dtype == "bf16":
            # Under bf16 autocast the frozen VGG's convolutions run in bf16 anyway; storing its
            # weights in bf16 saves the per-step cast of 15 M parameters. The Gram targets above
            # were computed in fp32 first.
            self.loss.vgg.to(torch.bfloat16)
        if train_scope == "new_rows":
            self._freeze_all_but_rows(self.rows)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.loss.vgg.to(memory_format=torch.channels_last)

    # -- what trains ------------------------------------------------------------------------------
    def _freeze_all_but_rows(self, rows: Sequence[int]) -> None:
        """Only the gamma/beta rows ``rows`` receive gradient: every other weight is frozen and
        the other rows' gradients are zeroed, so Adam leaves them exactly as they were."""
        self.net.requires_grad_(False)
        keep = torch.zeros(self.net.num_styles, 1)
        keep[list(rows)] = 1.0
        for n in self.net.norms():
            for p in (n.gamma, n.beta):
                p.requires_grad_(True)
                p.register_hook(lambda g, keep=keep: g * keep.to(g.device, g.dtype))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    # -- checkpoints never carry the frozen VGG: it is rebuilt from its weights file ---------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(VGG_PREFIX)]:
            del sd[k]
        checkpoint["stylenet"] = {
            "style_names": self.style_names,
            "model_args": self.net.config.to_dict(),
            "rows": self.rows,
            "train_scope": self.hparams.train_scope,
            "skipped_images": self.skipped_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("stylenet", {})
        if meta.get("style_names") and meta["style_names"] != self.style_names:
            raise TrainingError(
                f"the checkpoint was trained on styles {meta['style_names']}, this run has "
                f"{self.style_names}; start afresh with ckpt_path=null or use another name="
            )
        self.skipped_images = int(meta.get("skipped_images", 0))

    def on_fit_start(self) -> None:
        # Every rank draws its own crops and style indices (seed_everything gives all ranks one
        # seed), and a resumed run does not replay the draws of its first steps.
        torch.manual_seed(int(self.hparams.seed) + 1_000_003 * self.global_rank + self.global_step)

    def forward(self, x: Tensor, mix: Tensor) -> Tensor:
        return self.net(x, mix)

    def draw_styles(self, b: int, device: torch.device) -> Tensor:
        """Per-sample indices into the trained styles: each sample gets its own random style, so
        one batch trains several styles at once (Dumoulin et al. 2017, Sec. 3)."""
        if self._uniform:
            return torch.randint(len(self.rows), (b,), device=device)
        return torch.multinomial(self._row_probs.to(device), b, replacement=True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x = batch["image"]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        k = self.draw_styles(x.shape[0], x.device)
        row = self._row_index.to(x.device)[k]
        mix = torch.nn.functional.one_hot(row, self.net.num_styles).to(x.dtype)
        y = self.net(x, mix)
        terms = self.loss(y, x, k)
        loss = terms["loss"]
        self._check_finite(loss, terms)
        for name, v in terms.items():
            self.log(
                f"train/{name}", v.detach(), prog_bar=name == "loss", on_step=True, on_epoch=False
            )
        fails = int(batch.get("failures", 0))
        if fails:
            self.skipped_images += fails
        self.log("data/skipped_images", float(self.skipped_images), on_step=True, on_epoch=False)
        return loss

    def _check_finite(self, loss: Tensor, terms: Mapping[str, Tensor]) -> None:
        """Stop on a non-finite loss, naming the step. Reading the loss is a host sync, so on a
        GPU the check reads an accumulated flag every ``nan_check_every`` steps instead; the
        periodic checkpoint is written after this check, so a bad network is never saved."""
        every = int(self.hparams.nan_check_every)
        if every <= 1:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    self.global_step, {k: float(v.detach()) for k, v in terms.items()}
                )
            return
        bad = ~torch.isfinite(loss.detach())
        step = torch.tensor(self.global_step, device=loss.device)
        if self._nan_flag is None:
            self._nan_flag = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._nan_flag = torch.where(bad & (self._nan_flag < 0), step, self._nan_flag)
        if (self.global_step + 1) % every == 0 or self._checkpoint_due():
            first = int(self._nan_flag)
            if first >= 0:
                raise NonFiniteLossError(first, {k: float(v.detach()) for k, v in terms.items()})

    def _checkpoint_due(self) -> bool:
        every = getattr(self, "checkpoint_every", 0)
        return bool(every) and (self.global_step + 1) % every == 0

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # Adam at 1e-3: Johnson et al. 2016, Sec. 4.1 (and pytorch/examples fast_neural_style).
        opt = torch.optim.Adam(self.trainable_parameters(), lr=hp.lr, betas=tuple(hp.betas))
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: lr_factor(step, total, hp.scheduler, hp.warmup_steps, hp.min_lr_ratio),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
            grid = stylize_grid(module.net, photos).clamp(0, 1).cpu()
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
    """Turns a Ctrl-C recorded by ``stylenet.signals`` into ``KeyboardInterrupt`` at the end of a
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
