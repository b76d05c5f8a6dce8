"""The training system: a LightningModule wiring the network, the perceptual loss and Adam (the
callbacks around it are ``stylenet.training.callbacks``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from stylenet.data.styles import StyleSpec, load_style_image
from stylenet.errors import OptionError, TrainingError
from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
from stylenet.nn.network import build_model
from stylenet.nn.vgg import DEFAULT_CONTENT_LAYERS, default_layer_weights

log = logging.getLogger(__name__)

# The frozen VGG and the Gram targets live under ``self.loss``; a predictor run also keeps an fp32
# VGG for style statistics as ``stats_vgg`` (the same module when the loss VGG is fp32).
VGG_PREFIXES = ("loss.", "stats_vgg.")
SCHEDULERS = ("constant", "cosine")
# What trains: every weight, or only the gamma/beta rows of the styles being added.
SCOPES = ("all", "new_rows")


class NonFiniteLossError(TrainingError):
    def __init__(self, step: int, terms: Mapping[str, float]) -> None:
        self.step = step
        detail = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"loss is not finite at step {step} ({detail})")


def lr_factor(
    step: int, total: int, scheduler: str, warmup_steps: int, min_lr_ratio: float,
    time_fraction: float | None = None,
) -> float:  # fmt: skip
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine decay to
    ``min_lr_ratio`` at ``total`` steps (Loshchilov & Hutter 2017, without restarts). With a
    wall-clock limit, ``time_fraction`` (the share of it spent, 0..1) moves the cosine along too,
    so it ends at ``min_lr_ratio`` at whichever limit comes first."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "cosine" and (total > warmup_steps or time_fraction is not None):
        t = 0.0
        if total > warmup_steps:
            t = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        if time_fraction is not None:
            t = max(t, min(1.0, time_fraction))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def time_fraction_of(trainer: pl.Trainer | None) -> Callable[[], float | None]:
    """The share of ``trainer.max_time`` spent in training so far (Lightning's Timer, which
    keeps it across a resume), or a function answering None where no limit is set. Also None
    with several processes: each reads its own clock, and ranks whose learning rates differ by a
    hair would let the DDP replicas drift apart; their schedule follows ``max_steps`` alone."""
    from pytorch_lightning.callbacks import Timer

    if trainer is None or trainer.world_size > 1:
        return lambda: None
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    if not timers:
        return lambda: None
    timer = timers[0]

    def fraction() -> float | None:
        spent, left = timer.time_elapsed("train"), timer.time_remaining("train")
        if left is None or spent + left <= 0:
            return None
        return spent / (spent + left)

    return fraction


def drop_frozen_vgg(checkpoint: dict[str, Any]) -> None:
    """Training checkpoints never carry the frozen VGG: it is rebuilt from its weights file."""
    sd = checkpoint["state_dict"]
    for k in [k for k in sd if k.startswith(VGG_PREFIXES)]:
        del sd[k]


def perceptual_loss_from(hp: Mapping[str, Any]) -> PerceptualLoss:
    """The loss network and loss of a module's hyperparameters (``content_layers``,
    ``style_layers``, the loss weights, ``vgg_weights``, ``vgg_weights_path``, ``vgg_pooling``),
    in fp32: style targets are computed before any ``vgg_dtype`` cast."""
    style_layers = dict(hp["style_layers"] or default_layer_weights())
    content_layers = list(hp["content_layers"])
    vgg = VGGFeatures(
        content_layers + list(style_layers), weights=hp["vgg_weights"],
        weights_path=hp["vgg_weights_path"], pooling=hp["vgg_pooling"],
    )  # fmt: skip
    return PerceptualLoss(
        vgg, content_layers, style_layers, hp["content_weight"], hp["style_weight"],
        hp["tv_weight"], hp["colour_weight"],
    )  # fmt: skip


def restore_run_meta(module: Any, checkpoint: dict[str, Any], names: list[str] | None) -> None:  # noqa: ANN401
    """On resuming: a checkpoint of other styles (``names``, in order) is refused with one line,
    and the count of skipped photos carries on."""
    meta = checkpoint.get("stylenet", {})
    if names is not None and meta.get("style_names") and meta["style_names"] != names:
        raise TrainingError(
            f"the checkpoint was trained on styles {meta['style_names']}, this run has "
            f"{names}; start afresh with ckpt_path=null or use another name="
        )
    module.skipped_images = int(meta.get("skipped_images", 0))


def seed_this_rank(module: pl.LightningModule) -> None:
    """Every rank draws its own crops and style indices (seed_everything gives all ranks one
    seed), and a resumed run does not replay the draws of its first steps."""
    seed = int(module.hparams.seed) + 1_000_003 * module.global_rank + module.global_step
    torch.manual_seed(seed)


def with_schedule(module: pl.LightningModule, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """``configure_optimizers``' answer: ``opt`` with the per-step schedule of the module's
    ``scheduler``, ``warmup_steps`` and ``min_lr_ratio`` over the trainer's ``max_steps``, or
    over its ``max_time`` where that comes first (the cosine then follows the clock)."""
    hp = module.hparams
    trainer = module._trainer
    total = trainer.max_steps if trainer is not None and trainer.max_steps > 0 else 0
    spent = time_fraction_of(trainer)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: lr_factor(
            step, total, hp.scheduler, hp.warmup_steps, hp.min_lr_ratio, spent()
        ),
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class StyleTransferModule(pl.LightningModule):
    """Trains ``net`` so its rows ``rows`` reproduce the styles ``styles`` (one spec per row).

    Plain training: one row per style, ``rows`` = 0..S-1. Growing a bank (``stylenet.training.grow``)
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
        colour_weight: float = 0.0,
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
        self.net = build_model(model_args)
        self.loss = perceptual_loss_from(self.hparams)
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
        drop_frozen_vgg(checkpoint)
        checkpoint["stylenet"] = {
            "style_names": self.style_names,
            "model_args": self.net.config.to_dict(),
            "rows": self.rows,
            "train_scope": self.hparams.train_scope,
            "skipped_images": self.skipped_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_run_meta(self, checkpoint, self.style_names)

    def on_fit_start(self) -> None:
        seed_this_rank(self)

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
        return with_schedule(self, opt)
