"""Training a style predictor (``experiment=arbitrary``): any style image -> a bank's norm rows.

The network is an exported bank's (``arbitrary.from``); its convolutions stay frozen unless
``arbitrary.train_network=true``, so the bank's own styles are untouched and the predictor ships
inside the same file. Each sample pairs a photo with a style image (``PairedDataModule``); the
style image's VGG statistics go through the predictor, the network stylizes the photo with the
predicted parameters, and the loss is the usual content + Gram style + TV loss with that style
image's Grams as the target (Ghiasi et al. 2017, Sec. 3.1, with the loss of Johnson et al.).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.utils import make_grid

from stylenet.checkpoints.format import network_from_checkpoint, read_checkpoint, read_predictor
from stylenet.losses.perceptual import gram_matrix
from stylenet.nn.predictor import EMBEDDING, HIDDEN, StylePredictor, style_statistics
from stylenet.nn.vgg import DEFAULT_CONTENT_LAYERS, default_layer_weights
from stylenet.training.module import (
    NonFiniteLossError,
    drop_frozen_vgg,
    perceptual_loss_from,
    restore_run_meta,
    seed_this_rank,
    with_schedule,
)

log = logging.getLogger(__name__)

# Style images drawn (un-augmented) to standardise the predictor's input statistics at the start
# of training: 64 give every one of the 1,920 means and deviations to within about 15% of its
# spread, which is all the standardisation needs.
NORMALISATION_SAMPLES = 64


class PredictorModule(pl.LightningModule):
    """Trains a ``StylePredictor`` for the network of the exported bank ``base``."""

    def __init__(
        self,
        base: str,
        train_network: bool = False,
        hidden: int = HIDDEN,
        embedding: int = EMBEDDING,
        style_size: int = 256,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Mapping[str, float] | None = None,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        vgg_weights: str = "imagenet",
        vgg_weights_path: str | None = None,
        lr: float = 1e-3,
        network_lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        channels_last: bool = False,
        nan_check_every: int = 1,
        seed: int = 0,
        vgg_dtype: str = "fp32",
        vgg_pooling: str = "max",
        encoder_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.strict_loading = False
        self.base = read_checkpoint(base)
        self.net = network_from_checkpoint(self.base, base).train()
        self.style_names = list(self.base["style_names"])
        style_layers = dict(style_layers or default_layer_weights())
        self.predictor = StylePredictor.for_network(
            self.net, layers=tuple(style_layers), hidden=hidden, embedding=embedding,
            style_size=style_size,
        )  # fmt: skip
        # Set once the input statistics are standardised (restored with a resumed run).
        self.register_buffer("normalised", torch.zeros((), dtype=torch.bool))
        if encoder_from:
            self._adopt_encoder(encoder_from)
        self.loss = perceptual_loss_from(self.hparams)
        # The predictor's input statistics and the Gram targets come from an fp32 VGG whatever
        # ``vgg_dtype`` says: at run time a style image's statistics are computed in fp32, and
        # bf16 ones (8-bit mantissa) differ enough to move standardised inputs; a tiny predictor
        # run on bf16 statistics did not learn at all where the fp32 one did (tests/test_predictor).
        # Only the passes through the stylised output and the photo run in bf16.
        self.stats_vgg = self.loss.vgg
        if vgg_dtype == "bf16":
            self.stats_vgg = copy.deepcopy(self.loss.vgg)
            self.loss.vgg.to(torch.bfloat16)
        self.net.requires_grad_(bool(train_network))
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
            self.loss.vgg.to(memory_format=torch.channels_last)
            self.stats_vgg.to(memory_format=torch.channels_last)
        self.skipped_images = 0
        self.interrupted_step: int | None = None
        self.style_samples: Tensor | None = None

    def _adopt_encoder(self, path: str) -> None:
        """``arbitrary.encoder_from``: the standardisation and encoder of another bank's trained
        predictor (the decoder still starts at this bank's mean row). The encoder was trained on
        that standardisation, so it is kept rather than measured again at the start."""
        from stylenet.errors import OptionError

        other = read_predictor(read_checkpoint(path), path)
        if other is None:
            raise OptionError(
                f"{path} has no style predictor to start the encoder from",
                option="arbitrary.encoder_from",
            )
        try:
            self.predictor.adopt_encoder(other)
        except ValueError as e:
            raise OptionError(
                f"the predictor of {path} reads other inputs: {e}", option="arbitrary.encoder_from"
            ) from e
        self.normalised.fill_(True)

    # -- checkpoints never carry the frozen VGG ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_frozen_vgg(checkpoint)
        checkpoint["stylenet"] = {
            "style_names": self.style_names,
            "model_args": self.net.config.to_dict(),
            "predictor_args": self.predictor.config.to_dict(),
            "train_scope": "predictor+network" if self.hparams.train_network else "predictor",
            "skipped_images": self.skipped_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_run_meta(self, checkpoint, None)

    def on_fit_start(self) -> None:
        seed_this_rank(self)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "style_samples"):
            self.style_samples = dm.style_samples()
        if not bool(self.normalised) and dm is not None and hasattr(dm, "statistics_sample"):
            images = dm.statistics_sample(NORMALISATION_SAMPLES, int(self.hparams.seed))
            self.predictor.set_normalisation(self.style_stats(images.to(self.device))[0])
            self.normalised.fill_(True)

    # -- the step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def style_stats(self, styles: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Statistics (the predictor's input) and Gram targets of a batch of style images."""
        feats = self.stats_vgg(styles)
        stats = style_statistics(feats, self.predictor.config.layers)
        grams = {n: gram_matrix(feats[n]) for n in self.loss.style_layers}
        return stats, grams

    def forward(self, x: Tensor, styles: Tensor) -> Tensor:
        stats, _ = self.style_stats(styles)
        return self.net(x, self.predictor(stats))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x, s = batch["image"], batch["style"]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            s = s.contiguous(memory_format=torch.channels_last)
        stats, grams = self.style_stats(s)
        y = self.net(x, self.predictor(stats))
        out_f = self.loss.vgg(y)
        with torch.no_grad():
            content_f = self.loss.vgg(x)
        terms = self.loss.combine(out_f, content_f, grams, y)
        loss = terms["loss"]
        if int(self.hparams.nan_check_every) <= 1 and not torch.isfinite(loss):
            raise NonFiniteLossError(
                self.global_step, {k: float(v.detach()) for k, v in terms.items()}
            )
        for name, v in terms.items():
            self.log(
                f"train/{name}", v.detach(), prog_bar=name == "loss", on_step=True, on_epoch=False
            )
        self.skipped_images += int(batch.get("failures", 0))
        self.log("data/skipped_images", float(self.skipped_images), on_step=True, on_epoch=False)
        return loss

    # -- the sample grid: held-out photos x held-out style images -------------------------------
    @torch.no_grad()
    def sample_grid(self, photos: Tensor, pad: int = 2) -> Tensor:
        """The style images along the top, then one row per photo stylized with each."""
        styles = self.style_samples
        if styles is None or not len(styles):
            styles = photos[:1]
        styles = styles.to(photos.device, photos.dtype)
        size = photos.shape[-2:]
        stats, _ = self.style_stats(styles)
        params = self.predictor(stats)
        top = [torch.ones_like(photos[0])] + [
            torch.nn.functional.interpolate(s[None], size=size, mode="bilinear")[0] for s in styles
        ]
        rows = [torch.stack(top)]
        for p in photos:
            x = p[None].expand(len(styles), -1, -1, -1)
            rows.append(torch.cat([p[None], self.net(x, params).float()]))
        return make_grid(torch.cat(rows), nrow=len(styles) + 1, padding=pad, pad_value=1.0)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = [{"params": list(self.predictor.parameters()), "lr": hp.lr}]
        if hp.train_network:
            groups.append({"params": list(self.net.parameters()), "lr": hp.network_lr})
        return with_schedule(self, torch.optim.Adam(groups, betas=tuple(hp.betas)))
