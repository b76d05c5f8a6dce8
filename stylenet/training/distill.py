"""Distilling a bank into another network (``experiment=distill``): a student, usually the CPU
network ``model=fast``, learns every style of an exported bank (``distill.teacher``) at once.

Each sample is a photo and one of the teacher's styles. The teacher stylizes it (frozen, no
gradient) and the student is trained towards the teacher's output in three ways, plus the loss
the teacher itself was trained with:

- in pixels (L1: a student that copies the teacher copies its colours exactly);
- in VGG feature space: the perceptual loss with the teacher's output as the content target and
  the teacher output's Gram matrices as the style target (what the teacher's output looks like
  to the loss network, photo by photo; Hinton et al. 2015's "soft targets", carried over to
  image-to-image networks as in Wang et al. 2020, "Collaborative Distillation for Ultra-Resolution
  Universal Style Transfer");
- the usual loss: content against the photo and Gram against the painting, with the weights and
  paintings recorded in the teacher's own training config (``usual_weight``; 0 when the
  paintings are not on this machine and no ``distill.usual_weight`` was asked for).

The student keeps the teacher's style names, thumbnails and history; the frozen teacher and the
frozen VGG are never saved in a training checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from stylenet.checkpoints.format import network_from_checkpoint, read_checkpoint
from stylenet.data.styles import recorded_style_specs
from stylenet.errors import TrainingError
from stylenet.losses.perceptual import gram_matrix
from stylenet.nn.network import (
    ModelConfig,
    build_model,
    complete_model_args,
    shuffle_out_weights,
    widen_trunk,
)
from stylenet.nn.vgg import DEFAULT_CONTENT_LAYERS
from stylenet.training.module import (
    NonFiniteLossError,
    drop_frozen_vgg,
    perceptual_loss_from,
    restore_run_meta,
    seed_this_rank,
    with_schedule,
)

log = logging.getLogger(__name__)

TEACHER_PREFIX = "teacher."


def student_init(path: str, names: Sequence[str], net: torch.nn.Module) -> dict[str, Tensor]:
    """The weights of the exported student ``path`` (``distill.init``: carry on distilling a
    network that was distilled before), checked to hold the teacher's styles in its order and to
    fit ``net`` (the run's ``model``); one line naming the mismatch otherwise. Model arguments
    that keep every weight's shape (``decoder``, ``upsample``) may differ: the run's own apply.
    A ``conv_resize`` student starts a ``conv_shuffle`` run as the same function: its last resize
    and output conv are folded into the shuffled output conv (``shuffle_out_weights``); so does a
    student with a narrower trunk (``model.trunk_channels``), widened by ``widen_trunk``."""
    ckpt = read_checkpoint(path)
    if list(ckpt["style_names"]) != list(names):
        raise TrainingError(
            f"distill.init={path} holds styles {list(ckpt['style_names'])}, the teacher "
            f"{list(names)}: a student starts from a network of the teacher's styles, in order"
        )
    own = net.state_dict()
    state = dict(ckpt["state_dict"])
    args = complete_model_args(ckpt["model_args"])
    if args["decoder"] == "conv_resize" and net.config.decoder == "conv_shuffle":
        state["out.conv.weight"], state["out.conv.bias"] = shuffle_out_weights(
            state["out.conv.weight"].float(), state["out.conv.bias"].float(), args["upsample"]
        )
        log.info("distill.init: the student's output conv folded into a conv_shuffle output")
    trunk, own_trunk = ModelConfig(**args).trunk, net.config.trunk
    if trunk < own_trunk and args["base_channels"] == net.config.base_channels:
        state = widen_trunk({k: v.float() for k, v in state.items()}, net)
        log.info(
            "distill.init: the student's trunk widened from %d to %d channels", trunk, own_trunk
        )
    bad = sorted(
        k for k in own.keys() | state.keys()
        if k not in own or k not in state or own[k].shape != state[k].shape
    )  # fmt: skip
    if bad:
        raise TrainingError(
            f"distill.init={path} does not fit model {dict(net.config.to_dict())} "
            f"({len(bad)} weights differ, e.g. {bad[0]}); pick the model it was trained with "
            f"({dict(ckpt['model_args'])})"
        )
    return {k: v.float() for k, v in state.items()}


def style_sampling(shares: Mapping[str, float] | None, names: Sequence[str]) -> Tensor | None:
    """How often each of the teacher's styles is drawn (``distill.style_shares``): relative
    shares by style name, 1 for a style not named; None when none is given (every style alike,
    drawn as before the option existed, so earlier runs repeat exactly). A name that is not
    the teacher's, or a share below 0 or not finite, is one line; so are shares that leave
    nothing to draw."""
    if not shares:
        return None
    unknown = sorted(set(shares) - set(names))
    if unknown:
        raise TrainingError(
            f"distill.style_shares names {unknown}, not styles of the teacher "
            f"(its styles: {', '.join(names)})"
        )
    probs = torch.ones(len(names), dtype=torch.float64)
    for i, n in enumerate(names):
        if n in shares:
            v = float(shares[n])
            if not math.isfinite(v) or v < 0:
                raise TrainingError(
                    f"distill.style_shares.{n}={shares[n]}: a share is a number >= 0"
                )
            probs[i] = v
    if probs.sum() <= 0:
        raise TrainingError("distill.style_shares are all 0: no style would be trained")
    return (probs / probs.sum()).float()


class DistillModule(pl.LightningModule):
    """Trains a new network (``model``) to reproduce every style of the exported bank
    ``teacher``."""

    def __init__(
        self,
        teacher: str,
        model: Mapping[str, Any] | None = None,
        init: str | None = None,
        pixel_weight: float = 0.0,
        teacher_weight: float = 1.0,
        usual_weight: float | None = None,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Mapping[str, float] | None = None,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        colour_weight: float = 0.0,
        style_size: int = 512,
        vgg_weights: str = "imagenet",
        vgg_weights_path: str | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        channels_last: bool = False,
        nan_check_every: int = 1,
        seed: int = 0,
        vgg_dtype: str = "fp32",
        vgg_pooling: str = "max",
        style_shares: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.strict_loading = False  # training checkpoints hold neither the teacher nor the VGG
        self.base = read_checkpoint(teacher)
        self.style_names = list(self.base["style_names"])
        self.teacher = network_from_checkpoint(self.base, teacher).eval().requires_grad_(False)
        self.style_probs = style_sampling(style_shares, self.style_names)
        model_args = {**dict(model or {}), "num_styles": len(self.style_names)}
        self.net = build_model(model_args)
        if init:
            self.net.load_state_dict(student_init(init, self.style_names, self.net))
        self.loss = perceptual_loss_from(self.hparams)
        specs = recorded_style_specs(self.base)
        if usual_weight is None:
            usual_weight = 1.0 if specs is not None else 0.0
            if specs is None:
                log.warning(
                    "the teacher's paintings are not all readable here: distilling from its "
                    "outputs only (distill.usual_weight=0)"
                )
        elif usual_weight > 0 and specs is None:
            raise TrainingError(
                "distill.usual_weight needs the teacher's paintings (named in its training "
                "config), and they are not all readable here; set distill.usual_weight=0"
            )
        self.usual_weight = float(usual_weight)
        if self.usual_weight <= 0 and teacher_weight <= 0 and pixel_weight <= 0:
            raise TrainingError(
                "distill.teacher_weight, distill.pixel_weight and distill.usual_weight are all 0: "
                "the student would learn nothing; give one of them a weight"
            )
        if self.usual_weight > 0:
            from stylenet.data.styles import load_style_image

            images = [load_style_image(s, style_size) for s in specs]
            self.loss.set_style_targets(images, [s.loss_scale for s in specs])
        if vgg_dtype == "bf16":
            self.loss.vgg.to(torch.bfloat16)
        if channels_last:
            for m in (self.net, self.teacher, self.loss.vgg):
                m.to(memory_format=torch.channels_last)
        self.skipped_images = 0
        self.interrupted_step: int | None = None

    # -- checkpoints carry the student only ------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_frozen_vgg(checkpoint)
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(TEACHER_PREFIX)]:
            del sd[k]
        checkpoint["stylenet"] = {
            "style_names": self.style_names,
            "model_args": self.net.config.to_dict(),
            "teacher": str(self.hparams.teacher),
            "train_scope": "distill",
            "skipped_images": self.skipped_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_run_meta(self, checkpoint, self.style_names)

    def on_fit_start(self) -> None:
        seed_this_rank(self)

    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()  # frozen: never in training mode
        return self

    def forward(self, x: Tensor, mix: Tensor) -> Tensor:
        return self.net(x, mix)

    # -- the step ---------------------------------------------------------------------------------
    def distill_terms(self, x: Tensor, k: Tensor) -> dict[str, Tensor]:
        """The loss terms for photos ``x`` stylized with the teacher's styles ``k`` (one each)."""
        mix = F.one_hot(k, self.net.num_styles).to(x.dtype)
        y = self.net(x, mix)
        out_f = self.loss.vgg(y)
        loss = y.new_zeros((), dtype=torch.float32)
        terms: dict[str, Tensor] = {}
        # The teacher's output is computed only when a term reads it: with both weights at 0 the
        # run trains the student on the usual loss alone, a step without the teacher's forward.
        if self.hparams.pixel_weight > 0 or self.hparams.teacher_weight > 0:
            vgg_dtype = next(self.loss.vgg.parameters()).dtype
            with torch.no_grad():
                target = self.teacher(x, mix)
                tgt_f = self.loss.vgg(target.to(vgg_dtype))
                tgt_grams = {n: gram_matrix(tgt_f[n]) for n in self.loss.style_layers}
            pixel = F.l1_loss(y.float(), target.float())
            feat = self.loss.combine(out_f, tgt_f, tgt_grams, y)
            loss = self.hparams.pixel_weight * pixel + self.hparams.teacher_weight * feat["loss"]
            terms.update(
                pixel_l1=pixel,
                teacher_content=feat["content_loss"],
                teacher_style=feat["style_loss"],
            )
        if self.usual_weight > 0:
            with torch.no_grad():
                photo_f = self.loss.vgg(x, self.loss.content_layers)
            usual = self.loss.combine(
                out_f, photo_f, self.loss.target_grams(k), y, self.loss.loss_scales[k],
                self.loss.target_colours(k),
            )  # fmt: skip
            loss = loss + self.usual_weight * usual["loss"]
            terms.update(content_loss=usual["content_loss"], style_loss=usual["style_loss"])
            if "colour_loss" in usual:
                terms["colour_loss"] = usual["colour_loss"]
        terms["loss"] = loss
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x = batch["image"]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.style_probs is None:
            k = torch.randint(self.net.num_styles, (x.shape[0],), device=x.device)
        else:
            k = torch.multinomial(self.style_probs, x.shape[0], replacement=True).to(x.device)
        terms = self.distill_terms(x, k)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                self.global_step, {n: float(v.detach()) for n, v in terms.items()}
            )
        for name, v in terms.items():
            self.log(
                f"train/{name}", v.detach(), prog_bar=name == "loss", on_step=True, on_epoch=False
            )
        self.skipped_images += int(batch.get("failures", 0))
        self.log("data/skipped_images", float(self.skipped_images), on_step=True, on_epoch=False)
        return loss

    # -- the sample grid: student and teacher side by side ---------------------------------------
    @torch.no_grad()
    def sample_grid(self, photos: Tensor, pad: int = 2) -> Tensor:
        """Two rows per photo: the photo then the student's rendering of every style, and below
        it a blank cell then the teacher's."""
        s = self.net.num_styles
        w = torch.eye(s, device=photos.device, dtype=photos.dtype)
        rows = []
        for p in photos:
            x = p[None].expand(s, -1, -1, -1)
            rows.append(torch.cat([p[None], self.net(x, w).float()]))
            rows.append(torch.cat([torch.ones_like(p)[None], self.teacher(x, w).float()]))
        return make_grid(torch.cat(rows), nrow=s + 1, padding=pad, pad_value=1.0)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        return with_schedule(self, opt)
