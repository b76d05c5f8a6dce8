"""The training system: a LightningModule wiring the network, the perceptual loss and Adam."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchvision.utils import make_grid

from stylenet.data import tensor_to_image
from stylenet.losses import PerceptualLoss, VGGFeatures
from stylenet.model import TransformerNet
from stylenet.styles import StyleSpec, load_style_image

log = logging.getLogger(__name__)

VGG_PREFIX = "loss."  # the frozen VGG and the Gram targets live under ``self.loss``


class NonFiniteLossError(RuntimeError):
    def __init__(self, step: int, terms: Mapping[str, float]) -> None:
        self.step = step
        detail = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"loss is not finite at step {step} ({detail})")


class StyleTransferModule(pl.LightningModule):
    def __init__(
        self,
        styles: Sequence[Mapping[str, Any]],
        model: Mapping[str, int] | None = None,
        content_layers: Sequence[str] = ("relu2_2",),
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Loaded checkpoints lack the frozen VGG (dropped on save): allow that when restoring.
        self.strict_loading = False
        self.style_specs = [StyleSpec(**dict(s)) for s in styles]
        self.style_names = [s.name for s in self.style_specs]
        model_args = dict(model or {})
        model_args["num_styles"] = len(self.style_specs)
        self.net = TransformerNet(**model_args)
        style_layers = dict(
            style_layers or {n: 1.0 for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
        )
        vgg = VGGFeatures(
            list(content_layers) + list(style_layers),
            weights=vgg_weights,
            weights_path=vgg_weights_path,
        )
        self.loss = PerceptualLoss(
            vgg, content_layers, style_layers, content_weight, style_weight, tv_weight
        )
        images = [load_style_image(s, style_size) for s in self.style_specs]
        self.loss.set_style_targets(images, [s.weight for s in self.style_specs])
        self.skipped_images = 0
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.loss.vgg.to(memory_format=torch.channels_last)

    # -- checkpoints never carry the frozen VGG: it is rebuilt from its weights file ---------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(VGG_PREFIX)]:
            del sd[k]
        checkpoint["stylenet"] = {
            "style_names": self.style_names,
            "model_args": self.net.config.to_dict(),
            "skipped_images": self.skipped_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("stylenet", {})
        if meta.get("style_names") and meta["style_names"] != self.style_names:
            raise ValueError(
                f"checkpoint was trained on styles {meta['style_names']}, "
                f"this run has {self.style_names}; use a new run directory"
            )
        self.skipped_images = int(meta.get("skipped_images", 0))

    def forward(self, x: Tensor, style_weights: Tensor) -> Tensor:
        return self.net(x, style_weights)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x = batch["image"]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        b = x.shape[0]
        # Each sample gets its own random style, so over an epoch every style meets every kind of
        # content image and one batch trains several styles at once (Dumoulin et al. Sec. 3).
        idx = torch.randint(len(self.style_names), (b,), device=x.device)
        w = torch.nn.functional.one_hot(idx, len(self.style_names)).to(x.dtype)
        y = self.net(x, w)
        terms = self.loss(y, x, idx)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                self.global_step, {k: float(v.detach()) for k, v in terms.items()}
            )
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach(), prog_bar=k == "loss", on_step=True, on_epoch=False)
        fails = int(batch.get("failures", torch.tensor(0)))
        if fails:
            self.skipped_images += fails
        self.log("data/skipped_images", float(self.skipped_images), on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # Adam at 1e-3: Johnson et al. 2016, Sec. 4.1 (and pytorch/examples fast_neural_style).
        opt = torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 0

        def factor(step: int) -> float:
            if hp.warmup_steps and step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            if hp.scheduler == "cosine" and total > hp.warmup_steps:
                t = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
                return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
            return 1.0

        if hp.scheduler not in ("constant", "cosine"):
            raise ValueError(
                f"optim.scheduler must be 'constant' or 'cosine', got {hp.scheduler!r}"
            )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
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
    """Every ``every_n_steps`` (and at the end) write a held-out photos x styles grid."""

    def __init__(self, photos: Tensor, every_n_steps: int = 200, out_dir: str | Path | None = None):
        self.photos = photos
        self.every = int(every_n_steps)
        self.out_dir = Path(out_dir) if out_dir else None
        self.last_path: Path | None = None
        self._last_step = -1

    def _write(self, trainer: pl.Trainer, module: StyleTransferModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not len(self.photos):
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
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"grid_step{step:06d}.png"
            tensor_to_image(grid).save(path)
            self.last_path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.every > 0 and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._write(trainer, pl_module)
