"""Training entry: a composed Hydra config in, a trained network and an inference checkpoint out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from stylenet.checkpoint import export_inference_checkpoint
from stylenet.data import ContentDataModule
from stylenet.styles import StyleSpec, load_style_image, specs_from_config
from stylenet.system import NonFiniteLossError, SampleGridCallback, StyleTransferModule

log = logging.getLogger("stylenet.train")


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    export_path: Path | None
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    sample_grid: Path | None = None
    wall_time_s: float = 0.0


def _run_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # composed outside a Hydra app (tests, notebooks)
        return Path(cfg.get("run_dir") or Path("outputs") / str(cfg.name))


def _resolve_ckpt(ckpt_path: Any, ckpt_dir: Path) -> str | None:
    last = ckpt_dir / "last.ckpt"
    if ckpt_path in (None, "", "null", "none", False):
        return None
    if ckpt_path == "auto":
        return str(last) if last.is_file() else None
    if ckpt_path == "last":
        if not last.is_file():
            raise TrainingError(f"ckpt_path=last but {last} does not exist")
        return str(last)
    p = Path(str(ckpt_path))
    if not p.is_file():
        raise TrainingError(f"ckpt_path={p} does not exist")
    return str(p)


def build_datamodule(cfg: DictConfig) -> ContentDataModule:
    d = cfg.data
    return ContentDataModule(
        root=d.root,
        annotations=d.get("annotations"),
        image_size=d.image_size,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        scale=tuple(d.scale),
        hflip=d.hflip,
        small_images=d.small_images,
        num_samples=cfg.samples.num_photos,
        sample_size=cfg.samples.size,
        pin_memory=d.get("pin_memory"),
        seed=cfg.seed,
    )


def build_module(cfg: DictConfig, specs: list[StyleSpec]) -> StyleTransferModule:
    lc, oc = cfg.loss, cfg.optim
    return StyleTransferModule(
        styles=[s.__dict__ for s in specs],
        model=OmegaConf.to_container(cfg.model, resolve=True),
        content_layers=list(lc.content_layers),
        style_layers=OmegaConf.to_container(lc.style_layers, resolve=True),
        content_weight=lc.content_weight,
        style_weight=lc.style_weight,
        tv_weight=lc.tv_weight,
        vgg_weights=lc.vgg.weights,
        vgg_weights_path=lc.vgg.get("weights_path"),
        style_size=cfg.style_size,
        lr=oc.lr,
        betas=tuple(oc.betas),
        scheduler=oc.scheduler,
        warmup_steps=oc.warmup_steps,
        min_lr_ratio=oc.min_lr_ratio,
        channels_last=bool(cfg.trainer.get("channels_last", False)),
    )


def train(cfg: DictConfig) -> TrainResult:
    t0 = time.time()
    pl.seed_everything(int(cfg.seed), workers=True)
    name = str(cfg.name)
    run_dir = _run_dir(cfg)
    ckpt_dir = run_dir / "checkpoints"

    # Everything that can be wrong with the inputs is checked before a model is built.
    dm = build_datamodule(cfg)
    dm.prepare()
    specs = specs_from_config(cfg.style)
    for s in specs:
        load_style_image(s, 8)  # missing or corrupt style image: StyleError naming the file
    resume = _resolve_ckpt(cfg.get("ckpt_path"), ckpt_dir)

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    module = build_module(cfg, specs)
    photos = dm.sample_images()
    grid_cb = SampleGridCallback(photos, cfg.samples.every_n_steps, run_dir / "samples")
    ckpt_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=int(cfg.checkpoint_every_n_steps),
        save_last=True,
        save_top_k=1,
    )
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tb", version="", default_hp_metric=False
    )
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs.pop("channels_last", None)
    trainer = pl.Trainer(
        **trainer_kwargs,
        logger=logger,
        callbacks=[ckpt_cb, grid_cb, LearningRateMonitor(logging_interval="step")],
        default_root_dir=str(run_dir),
        max_epochs=-1,
    )
    if resume:
        log.info("resuming from %s", resume)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
    except NonFiniteLossError as e:
        last = ckpt_dir / "last.ckpt"
        kept = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was saved yet"
        raise TrainingError(
            f"training stopped: {e}; {kept}. Lower optim.lr or the loss weights, then resume."
        ) from e

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    export_path = None
    if trainer.global_step > 0 and not trainer.interrupted:
        export_path = Path(cfg.export_dir) / f"{name}.pt"
        export_inference_checkpoint(
            module.net,
            module.style_names,
            export_path,
            train_config=OmegaConf.to_container(cfg, resolve=True),
            extra={"trained_steps": int(trainer.global_step)},
        )
        log.info("exported inference checkpoint: %s", export_path)
    res = TrainResult(
        run_dir=run_dir,
        export_path=export_path,
        global_step=int(trainer.global_step),
        metrics=metrics,
        sample_grid=grid_cb.last_path,
        wall_time_s=time.time() - t0,
    )
    if dm.scan is not None and dm.scan.num_skipped + module.skipped_images:
        log.warning(
            "skipped %d unreadable or unusable content files (%d at scan, %d while training)",
            dm.scan.num_skipped + module.skipped_images,
            dm.scan.num_skipped,
            module.skipped_images,
        )
    return res
