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
from stylenet.data.style_images import random_view
from stylenet.io.images import resize_long
from stylenet.losses.perceptual import colour_stats, gram_matrix
from stylenet.nn.predictor import (
    EMBEDDING,
    HIDDEN,
    StylePredictor,
    bank_rows,
    floored_spread,
    style_statistics,
)
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
# Views of each bank painting for the row anchors (arbitrary.anchor_weight): the whole painting
# and 7 crops; they are computed once, and the anchor term costs one pass of the predictor over
# 10 x 8 statistics vectors per step, nothing beside the VGG passes of the step itself.
ANCHOR_VIEWS = 8


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
        colour_weight: float = 0.0,
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
        init: str | None = None,
        anchor_weight: float = 0.0,
        anchor_views: int = ANCHOR_VIEWS,
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
        if encoder_from and init:
            from stylenet.errors import OptionError

            raise OptionError(
                "give arbitrary.init (the whole predictor) or arbitrary.encoder_from (its "
                "encoder), not both", option="arbitrary.init",
            )  # fmt: skip
        if encoder_from:
            self._start_from(encoder_from, whole=False)
        if init:
            self._start_from(init, whole=True)
        self.anchor_specs = self._anchor_specs(float(anchor_weight))
        # Per anchor view: the VGG statistics and its painting's trained row; and the spread of
        # each parameter over the bank's rows (built at the start of fitting, on the run's
        # device; never saved).
        self.anchor_stats: Tensor | None = None
        self.anchor_targets: Tensor | None = None
        self.anchor_spread: Tensor | None = None
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

    def _start_from(self, path: str, whole: bool) -> None:
        """Start from the trained predictor of the exported bank ``path``: all of it
        (``arbitrary.init``: carry on training a predictor for a network with this bank's norms,
        usually ``arbitrary.from`` itself), or its standardisation and encoder
        (``arbitrary.encoder_from``: the decoder still starts at this bank's mean row). Either way
        the encoder was trained on that standardisation, so it is kept rather than measured again
        at the start."""
        from stylenet.errors import OptionError

        option, start, misfit = (
            ("arbitrary.init", "to start from", "does not fit")
            if whole
            else ("arbitrary.encoder_from", "to start the encoder from", "reads other inputs")
        )
        other = read_predictor(read_checkpoint(path), path)
        if other is None:
            raise OptionError(f"{path} has no style predictor {start}", option=option)
        try:
            (self.predictor.adopt if whole else self.predictor.adopt_encoder)(other)
        except ValueError as e:
            raise OptionError(f"the predictor of {path} {misfit}: {e}", option=option) from e
        self.normalised.fill_(True)

    def _anchor_specs(self, weight: float) -> list | None:
        """The bank's paintings, for ``arbitrary.anchor_weight`` > 0 (None when it is 0)."""
        from stylenet.data.styles import recorded_style_specs
        from stylenet.errors import OptionError

        if weight < 0:
            raise OptionError(f"must be >= 0, got {weight}", option="arbitrary.anchor_weight")
        if weight == 0:
            return None
        specs = recorded_style_specs(self.base)
        if specs is None:
            raise OptionError(
                f"needs the paintings of {self.hparams.base} (named in its training config), "
                "and they are not all readable here; set arbitrary.anchor_weight=0",
                option="arbitrary.anchor_weight",
            )  # fmt: skip
        return specs

    @torch.no_grad()
    def build_anchors(self) -> None:
        """The statistics of ``anchor_views`` views of each of the bank's paintings: the whole
        painting at the style size (how a style image is read when stylizing), then random crops
        and flips as the training styles get (no colour jitter: a recoloured painting is not the
        painting its row was trained for). Seeded by the run's seed."""
        from stylenet.data.styles import load_style_image

        size = int(self.hparams.style_size)
        gen = torch.Generator().manual_seed(int(self.hparams.seed))
        views, rows = [], []
        for k, spec in enumerate(self.anchor_specs or []):
            full = load_style_image(spec, size * 4)[0]
            views.append(resize_long(full[None], size)[0])
            for _ in range(int(self.hparams.anchor_views) - 1):
                views.append(random_view(full, size, gen))
            rows += [k] * int(self.hparams.anchor_views)
        stats = [self.style_stats(v[None].to(self.device))[0] for v in views]
        self.anchor_stats = torch.cat(stats)
        targets = bank_rows(self.net).to(self.device)
        self.anchor_targets = targets[torch.tensor(rows, device=self.device)]
        # Each parameter in units of its spread over the bank's rows (a gamma of relu1 and a beta
        # of the last block differ by orders of magnitude); a parameter the rows hardly vary is
        # measured against a tenth of the median spread, not its own.
        spread = targets.std(0) if len(targets) > 1 else torch.ones_like(targets[0])
        self.anchor_spread = floored_spread(spread)

    def anchor_term(self) -> Tensor:
        """Squared distance of the predicted rows of the paintings' views from their trained
        rows, in units of the rows' spread: the mean over each norm's gammas and over its betas,
        then the mean over those groups. Every norm counts alike, whatever its width: the last
        norm has 3 channels of about 2,800 parameters, yet its gamma and beta scale and shift
        the output image itself. With a plain mean over parameters, a predictor anchored to 0.35
        (cafe_terrace, bank_all.pt) still scored 2.42x the trained row's loss; the trained
        row's last norm alone in its place brought that to 1.17x (one-off check, 4 held-out
        photos at 384 px)."""
        assert self.anchor_stats is not None
        pred = self.predictor.vector(self.anchor_stats)
        diff = (pred - self.anchor_targets) / self.anchor_spread
        widths = list(self.predictor.config.channels) * 2  # gammas, then betas
        groups = torch.split(diff.pow(2), widths, dim=1)
        return torch.stack([g.mean() for g in groups]).mean()

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
        if self.anchor_specs is not None:
            self.build_anchors()

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
        # The style images' colours only where the term counts (it is off for predictors by
        # default: configs/experiment/arbitrary.yaml).
        colours = colour_stats(s) if self.loss.colour_weight > 0 else None
        terms = self.loss.combine(out_f, content_f, grams, y, target_colours=colours)
        if self.anchor_stats is not None:
            terms["anchor"] = self.anchor_term()
            terms["loss"] = terms["loss"] + float(self.hparams.anchor_weight) * terms["anchor"]
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
