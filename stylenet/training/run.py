"""Training entry: a composed Hydra config in, a trained network and an inference checkpoint out.

Everything that can be wrong with the inputs is checked before a model is built; a resumed run is
checked against the checkpoint it resumes (model and styles); an exported file that this run did
not write is never replaced unless ``export.overwrite=true``; Ctrl-C and SIGTERM save a
checkpoint and say how to resume.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from stylenet.data.styles import load_style_image, specs_from_config
from stylenet.errors import (
    Interrupted,
    StylenetError,
    TrainingError,
)
from stylenet.io.files import check_writable_dir, write_text
from stylenet.runtime import signals
from stylenet.runtime.device import cpu_bf16_convs, cuda_available
from stylenet.training.build import (
    _explicit_overrides,
    _trainer_kwargs,
    build_datamodule,
    build_trainer,
)
from stylenet.training.callbacks import (
    AtomicCheckpointIO,
    InterruptCheckpoint,
    SampleGridCallback,
    StepProgressBar,
    StopAtStepEnd,
)
from stylenet.training.config import validate_train_config
from stylenet.training.module import NonFiniteLossError
from stylenet.training.outputs import (
    RUN_STATE,
    _export,
    _export_dir,
    _read_state,
    choose_export_path,
)
from stylenet.training.plans import make_plan
from stylenet.training.resume import check_resume_matches, resolve_resume

log = logging.getLogger("stylenet.train")


@dataclass
class TrainResult:
    run_dir: Path
    export_path: Path | None
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    sample_grid: Path | None = None
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def process_rank() -> int:
    """This process's global rank under DDP (0 otherwise), from the launcher's environment."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _run_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    # Outside a Hydra app (tests, notebooks): "HydraConfig was not set", or a Hydra config
    # composed without a run (no runtime.output_dir).
    except (ValueError, OmegaConfBaseException):
        return Path(cfg.get("run_dir") or Path("outputs") / str(cfg.name))


# Lightning warnings that say nothing about a stylenet run: the frozen VGG is in eval mode on
# purpose, and the sampler reshuffles per epoch on resume by design (LongEpochSampler).
_QUIET = (
    r".*module\(s\) in eval mode.*",
    r".*dataloader is not resumable.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*Checkpoint directory .* exists and is not empty.*",
)


def quiet_lightning() -> None:
    """Lightning's informational lines (devices available, the model summary table, why fit
    stopped) say nothing a stylenet run does not say itself; its warnings still show."""
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve_vgg_dtype(choice: str, cuda: bool, precision: str) -> str:
    """The frozen VGG's precision (``speed.vgg_dtype``). ``auto``: bf16 where the run computes in
    bf16 on a GPU (``trainer.precision=bf16-mixed``) and on CPUs with bf16 instructions
    (``cpu_bf16_convs``), fp32 elsewhere. The network trains in ``trainer.precision`` whatever
    this says; style targets are computed in fp32 before the cast."""
    if choice == "auto":
        if cuda:
            return "bf16" if precision.startswith("bf16") else "fp32"
        return "bf16" if cpu_bf16_convs() else "fp32"
    return choice  # fp32 or bf16: _trainer_kwargs checked it


def _drop_if_empty(run_dir: Path) -> None:
    """A run refused (or stopped) before it wrote anything leaves no folder behind: Hydra creates
    the run folder before the checks run. Only an empty folder is removed."""
    try:
        run_dir.rmdir()
    except OSError:  # not empty (a resumed run's files, another run's), or never created
        pass


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> TrainResult:
    """Train from a composed config; ``extra_callbacks`` are added to the Lightning trainer."""
    run_dir = _run_dir(cfg)
    # Ctrl-C and SIGTERM during start-up (the photo scan can take minutes on a large set) stop
    # the run at the next check with one line; Lightning takes SIGTERM over once fit starts.
    previous = signals.install(sigterm=True)
    try:
        return _train(cfg, run_dir, extra_callbacks, previous)
    except KeyboardInterrupt:
        _drop_if_empty(run_dir)
        raise Interrupted(
            "training stopped during start-up, before its first step; rerun the same command to "
            "start"
        ) from None
    except StylenetError:
        _drop_if_empty(run_dir)
        raise
    finally:
        signals.restore(previous)


def _train(
    cfg: DictConfig, run_dir: Path, extra_callbacks: list | None, startup_handlers: dict
) -> TrainResult:
    t0 = time.time()
    quiet_lightning()
    validate_train_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    name = str(cfg.name)
    ckpt_dir = run_dir / "checkpoints"
    rank = process_rank()
    notes: list[str] = []

    # Everything that can be wrong with the inputs is checked before a model is built.
    trainer_kw, compile_mode, refresh = _trainer_kwargs(cfg)
    specs = specs_from_config(cfg.style)
    for s in specs:
        load_style_image(s, 16)  # missing or corrupt style image: StyleError naming the file
    # The plan first: it may set the config from the bank it starts from (crop size, painting
    # size, loss weights: adopt_bank_recipe), which the photos and the module then follow.
    plan = make_plan(cfg, specs)
    model_args, names = plan.model_args, plan.names
    dm = build_datamodule(cfg)
    dm.prepare()
    signals.check()
    resume, resume_ckpt = resolve_resume(cfg.get("ckpt_path"), ckpt_dir)
    if resume_ckpt is not None:
        check_resume_matches(resume_ckpt, resume, model_args, names)

    state = _read_state(run_dir) if resume else {}
    run_id = state.get("run_id") or uuid.uuid4().hex
    target = _export_dir(cfg) / f"{name}.pt"
    export_path = Path(state["export_path"]) if state.get("export_path") else None
    if export_path is None or export_path.parent != target.parent:
        export_path, note = choose_export_path(target, run_id, bool(cfg.export.overwrite))
        if note:
            log.warning("note: %s", note)
            notes.append(note)
    if rank == 0:
        # Before training, not after it: a run must not learn for an hour and then fail to save.
        check_writable_dir(export_path.parent)
    signals.check()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / RUN_STATE, json.dumps({"run_id": run_id, "name": name,
                                                    "export_path": str(export_path)}, indent=2))  # fmt: skip
        # The run's record of its configuration, written once its inputs have passed the checks
        # (Hydra's own .hydra/ folder is turned off: it was written even for refused runs).
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        write_text(
            run_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(_explicit_overrides()))
        )

    cuda = cuda_available() and trainer_kw.get("accelerator") != "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    every_ckpt = int(cfg.checkpoint_every_n_steps)
    # NaN check: every step on a CPU; on a GPU, at each logging step (a host sync otherwise).
    nan_every = int(trainer_kw.get("log_every_n_steps", 10)) if cuda else 1
    vgg_dtype = resolve_vgg_dtype(
        str(cfg.speed.get("vgg_dtype", "auto")), cuda, str(trainer_kw.get("precision", ""))
    )
    module = plan.build_module(cfg, nan_check_every=nan_every, vgg_dtype=vgg_dtype)
    module.checkpoint_every = every_ckpt
    plan.before_fit(cfg, module, dm, resuming=resume is not None)
    if compile_mode == "on" or (compile_mode == "auto" and cuda):
        # Static shapes (every crop is image_size): one graph each for the network and the VGG.
        module.net.compile(dynamic=False)
        module.loss.vgg.compile(dynamic=False)

    photos = dm.sample_images()
    grid_cb = SampleGridCallback(photos, cfg.samples.every_n_steps, run_dir / "samples")
    ckpt_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=every_ckpt,
        save_last=True,
        save_top_k=1,
    )
    interrupt_cb = InterruptCheckpoint(ckpt_dir / "last.ckpt")
    callbacks = [ckpt_cb, grid_cb, interrupt_cb, StopAtStepEnd(),
                 LearningRateMonitor(logging_interval="step")]  # fmt: skip
    callbacks += list(extra_callbacks or [])
    if trainer_kw.get("enable_progress_bar", True):
        callbacks.append(StepProgressBar(refresh_rate=refresh))
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tb", version="", default_hp_metric=False
    )
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = build_trainer(
        cfg,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        max_epochs=-1,
        plugins=[AtomicCheckpointIO()],
    )
    if resume:
        log.info("resuming from %s (step %d)", resume, int(resume_ckpt["global_step"]))
    log.info(
        "training %s: %d style(s), %d photos, steps %d..%d on %s (%s, loss VGG16 in %s)",
        name, len(names), len(dm.train_files), int(resume_ckpt["global_step"]) if resume_ckpt else 0,
        int(trainer_kw["max_steps"]), "cuda" if cuda else "cpu", trainer_kw.get("precision"),
        vgg_dtype,
    )  # fmt: skip
    # Ctrl-C is recorded and honoured at the end of the current step (StopAtStepEnd); a second
    # one raises at once. SIGTERM goes back to Lightning, which stops at a step boundary itself.
    signals.check()
    signals.restore(startup_handlers)
    previous_handlers = signals.install(sigterm=False)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    except NonFiniteLossError as e:
        last = ckpt_dir / "last.ckpt"
        kept = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was saved yet"
        raise TrainingError(
            f"training stopped: {e}; {kept}. Lower optim.lr or the loss weights, then resume."
        ) from e
    except (SystemExit, KeyboardInterrupt) as e:  # Lightning exits 1 after Ctrl-C / SIGTERM
        step = interrupt_cb.step if interrupt_cb.step is not None else int(trainer.global_step)
        if interrupt_cb.step is None and not isinstance(e, KeyboardInterrupt):
            raise
        saved = (ckpt_dir / "last.ckpt").is_file()
        raise Interrupted(
            f"training stopped at step {step}; rerun the same command to resume from step {step}"
            if saved and step > 0
            else "training stopped before its first checkpoint; rerun the same command to start again"
        ) from None
    finally:
        signals.restore(previous_handlers)
    if trainer.interrupted:
        raise Interrupted(
            f"training stopped at step {trainer.global_step}; rerun the same command to resume "
            f"from step {trainer.global_step}"
        )

    if trainer.global_step > 0:
        # The end of the run is its last checkpoint, so a longer run of the same command goes on
        # from here (the periodic checkpoint can be up to checkpoint_every_n_steps behind).
        trainer.save_checkpoint(str(ckpt_dir / "last.ckpt"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    exported = None
    if trainer.global_step > 0 and trainer.is_global_zero:
        exported = _export(cfg, module, plan, export_path, run_id, int(trainer.global_step))
    res = TrainResult(
        run_dir=run_dir,
        export_path=exported,
        global_step=int(trainer.global_step),
        metrics=metrics,
        sample_grid=grid_cb.last_path,
        wall_time_s=time.time() - t0,
        notes=notes,
    )
    if dm.scan is not None and dm.scan.num_skipped + module.skipped_images:
        log.warning(
            "skipped %d unreadable or unusable content files (%d at scan, %d while training)",
            dm.scan.num_skipped + module.skipped_images,
            dm.scan.num_skipped,
            module.skipped_images,
        )
    return res
