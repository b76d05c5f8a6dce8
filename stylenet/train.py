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
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from stylenet import signals
from stylenet.checkpoint import build_payload, make_thumbnail, now_iso, read_raw, save_checkpoint
from stylenet.config import validate_train_config
from stylenet.data import ContentDataModule
from stylenet.errors import (
    CheckpointError,
    Interrupted,
    OptionError,
    StylenetError,
    TrainingError,
)
from stylenet.files import check_writable_dir, write_text
from stylenet.model import complete_model_args
from stylenet.styles import StyleSpec, load_style_image, specs_from_config
from stylenet.system import (
    AtomicCheckpointIO,
    InterruptCheckpoint,
    NonFiniteLossError,
    SampleGridCallback,
    StepProgressBar,
    StopAtStepEnd,
    StyleTransferModule,
)

log = logging.getLogger("stylenet.train")

RUN_STATE = "run.json"


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


def _explicit_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, OmegaConfBaseException):  # not inside a Hydra app
        return []


# ----------------------------------------------------------------------------- resuming


def _readable_lightning_ckpt(p: Path) -> dict[str, Any]:
    ckpt = read_raw(p, what="training checkpoint")
    if ckpt.get("format") == "stylenet.inference":
        raise CheckpointError(
            f"{p} is an exported inference checkpoint, not a Lightning training checkpoint; to "
            f"train on from it, use finetune.from={p} (and ckpt_path=null)"
        )
    if "state_dict" not in ckpt or "global_step" not in ckpt:
        raise CheckpointError(f"{p} is not a Lightning training checkpoint")
    return ckpt


def _newest_good(ckpt_dir: Path, skip: Path) -> tuple[Path, dict] | None:
    cands = sorted(
        (p for p in ckpt_dir.glob("*.ckpt") if p != skip),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for p in cands:
        try:
            return p, _readable_lightning_ckpt(p)
        except CheckpointError:
            continue
    return None


def resolve_resume(ckpt_path: Any, ckpt_dir: Path) -> tuple[str | None, dict | None]:
    """(path to resume from, its contents) for ``ckpt_path`` = auto | last | null | a path."""
    last = ckpt_dir / "last.ckpt"
    if ckpt_path in (None, "", "null", "none", False):
        return None, None
    if ckpt_path in ("auto", "last"):
        if not last.is_file():
            if ckpt_path == "last":
                raise TrainingError(f"ckpt_path=last but {last} does not exist")
            return None, None
        try:
            return str(last), _readable_lightning_ckpt(last)
        except CheckpointError as e:
            good = _newest_good(ckpt_dir, last)
            if good is None:
                raise TrainingError(
                    f"cannot resume: {e}; no other checkpoint in {ckpt_dir} is readable. Start "
                    "afresh with ckpt_path=null"
                ) from e
            log.warning(
                "%s; resuming from %s (step %d) instead", e, good[0].name, good[1]["global_step"]
            )
            return str(good[0]), good[1]
    p = Path(str(ckpt_path))
    if not p.is_file():
        raise TrainingError(f"ckpt_path={p} does not exist")
    return str(p), _readable_lightning_ckpt(p)


def check_resume_matches(ckpt: dict, path: str, model_args: dict, names: list[str]) -> None:
    """The checkpoint being resumed must hold the network this config builds."""
    meta = ckpt.get("stylenet") or {}
    diffs = []
    saved_args = complete_model_args(meta.get("model_args") or {})
    for k, v in complete_model_args(model_args).items():
        if meta.get("model_args") and saved_args[k] != v:
            diffs.append(f"{k} {saved_args[k]} -> {v}")
    saved_names = meta.get("style_names")
    if saved_names and list(saved_names) != list(names):
        diffs.append(f"styles {saved_names} -> {names}")
    if diffs:
        raise TrainingError(
            f"{path} was trained with another network ({'; '.join(diffs)}); start afresh with "
            "ckpt_path=null, or give this run another name=..."
        )


# ----------------------------------------------------------------------------- exporting


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_STATE).read_text())
    except (OSError, ValueError):
        return {}


def choose_export_path(target: Path, run_id: str, overwrite: bool) -> tuple[Path, str | None]:
    """Where this run may export: ``target`` unless another run's network is there, in which
    case a fresh ``<name>-N.pt`` (or ``target`` itself with ``overwrite``). Returns the path and
    a note for the log when it differs from ``target``."""
    if not target.exists() or overwrite:
        return target, None
    try:
        owner = read_raw(target).get("run_id")
    except CheckpointError:
        owner = None
    if owner == run_id:
        return target, None
    n = 2
    while (cand := target.with_name(f"{target.stem}-{n}{target.suffix}")).exists():
        n += 1
    return cand, (
        f"{target} exists and was not written by this run, so this run will export to {cand} "
        "(export.overwrite=true replaces the existing file instead)"
    )


def _export_dir(cfg: DictConfig) -> Path:
    legacy = cfg.get("export_dir")
    if legacy:
        log.warning("export_dir is now export.dir; reading it from export_dir=%s", legacy)
        return Path(str(legacy))
    return Path(str(cfg.export.dir))


# ----------------------------------------------------------------------------- building


def build_datamodule(cfg: DictConfig) -> ContentDataModule:
    d = cfg.data
    try:
        return ContentDataModule(
            root=d.root,
            annotations=d.get("annotations"),
            exclude=OmegaConf.to_container(d.exclude)
            if isinstance(d.get("exclude"), ListConfig)
            else d.get("exclude"),
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
            min_epoch_samples=int(d.get("min_epoch_samples") or 0),
            scan_cache=bool(d.get("scan_cache", True)),
        )
    except OptionError as e:
        raise _config_error(e) from e


# Library option names -> the config keys a user sets.
CONFIG_KEYS = {
    "image_size": "data.image_size", "batch_size": "data.batch_size", "root": "data.root",
    "annotations": "data.annotations", "exclude": "data.exclude", "num_workers": "data.num_workers", "scale": "data.scale",
    "small_images": "data.small_images", "sample_size": "samples.size",
    "vgg_weights": "loss.vgg.weights", "pooling": "loss.vgg.pooling",
    "scheduler": "optim.scheduler",
}  # fmt: skip


def _config_error(e: StylenetError) -> StylenetError:
    """The same error, naming the config key instead of the library parameter."""
    if e.option and e.option in CONFIG_KEYS:
        return type(e)(e.message, option=CONFIG_KEYS[e.option])
    return e


def build_module(
    cfg: DictConfig,
    specs: list[StyleSpec],
    *,
    model_args: dict | None = None,
    row_names: list[str] | None = None,
    rows: list[int] | None = None,
    row_shares: list[float] | None = None,
    train_scope: str = "all",
    lr: float | None = None,
    nan_check_every: int = 1,
    vgg_dtype: str = "fp32",
) -> StyleTransferModule:
    lc, oc = cfg.loss, cfg.optim
    try:
        return StyleTransferModule(
            styles=[s.to_dict() for s in specs],
            model=model_args or OmegaConf.to_container(cfg.model, resolve=True),
            content_layers=list(lc.content_layers),
            style_layers=OmegaConf.to_container(lc.style_layers, resolve=True),
            content_weight=lc.content_weight,
            style_weight=lc.style_weight,
            tv_weight=lc.tv_weight,
            vgg_weights=lc.vgg.weights,
            vgg_weights_path=lc.vgg.get("weights_path"),
            style_size=cfg.style_size,
            lr=lr if lr is not None else oc.lr,
            betas=tuple(oc.betas),
            scheduler=oc.scheduler,
            warmup_steps=oc.warmup_steps,
            min_lr_ratio=oc.min_lr_ratio,
            channels_last=bool(cfg.trainer.get("channels_last", False)),
            row_names=row_names,
            rows=rows,
            row_shares=row_shares,
            train_scope=train_scope,
            nan_check_every=nan_check_every,
            seed=int(cfg.seed),
            vgg_dtype=vgg_dtype,
            vgg_pooling=str(lc.vgg.get("pooling", "max")),
        )
    except OptionError as e:
        raise _config_error(e) from e


def _model_overrides(cfg: DictConfig) -> dict[str, Any]:
    """Model keys the user set on the command line (``model=narrow`` or ``model.x=...``)."""
    out: dict[str, Any] = {}
    for o in _explicit_overrides():
        if o.startswith("model=") or o.startswith("model.") or o.startswith("+model."):
            out.update(OmegaConf.to_container(cfg.model, resolve=True))
    return out


def _trainer_kwargs(cfg: DictConfig) -> tuple[dict[str, Any], str, int]:
    kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    kw.pop("channels_last", None)
    compile_mode = kw.pop("compile", "auto")
    # YAML 1.1 reads a bare on/off as a boolean: accept either spelling.
    compile_mode = {True: "on", False: "off"}.get(compile_mode, str(compile_mode))
    refresh = int(kw.pop("progress_refresh_rate", 1) or 1)
    if compile_mode not in ("auto", "on", "off"):
        raise OptionError(
            f"must be auto, on or off; got {compile_mode!r}", option="trainer.compile"
        )
    kw["max_steps"] = int(kw["max_steps"])  # validate_train_config checked it
    return kw, compile_mode, refresh


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
    dm = build_datamodule(cfg)
    dm.prepare()
    signals.check()
    specs = specs_from_config(cfg.style)
    for s in specs:
        load_style_image(s, 16)  # missing or corrupt style image: StyleError naming the file
    plan = None
    ft = cfg.get("finetune") or {}
    if ft.get("from"):
        from stylenet.finetune import plan_finetune

        plan = plan_finetune(
            ft["from"], specs, mode=str(ft.get("mode", "affine")), init=str(ft.get("init", "mean")),
            replace_existing=bool(ft.get("replace", False)), replay=float(ft.get("replay", 0.5)),
            model_overrides=_model_overrides(cfg), style_size=int(cfg.style_size),
        )  # fmt: skip
        model_args = plan.model_args
        names = plan.names
    else:
        model_args = {**OmegaConf.to_container(cfg.model, resolve=True), "num_styles": len(specs)}
        names = [s.name for s in specs]
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

    cuda = torch.cuda.is_available() and trainer_kw.get("accelerator") != "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    every_ckpt = int(cfg.checkpoint_every_n_steps)
    # NaN check: every step on a CPU; on a GPU, at each logging step (a host sync otherwise).
    nan_every = int(trainer_kw.get("log_every_n_steps", 10)) if cuda else 1
    vgg_dtype = (
        "bf16" if cuda and str(trainer_kw.get("precision", "")).startswith("bf16") else "fp32"
    )
    if plan is not None:
        t_specs, t_rows, t_shares = plan.training_styles()
        affine = plan.mode == "affine"
        module = build_module(
            cfg, t_specs, model_args=model_args, row_names=names, rows=t_rows, row_shares=t_shares,
            train_scope="new_rows" if affine else "all",
            lr=float(ft.get("affine_lr", cfg.optim.lr)) if affine else None, nan_check_every=nan_every,
            vgg_dtype=vgg_dtype,
        )  # fmt: skip
        from stylenet.finetune import grow_network

        grown = grow_network(plan, module.loss, int(cfg.style_size))
        module.net.load_state_dict(grown.state_dict())
    else:
        module = build_module(cfg, specs, nan_check_every=nan_every, vgg_dtype=vgg_dtype)
    module.checkpoint_every = every_ckpt
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
    trainer = pl.Trainer(
        **trainer_kw,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        max_epochs=-1,
        plugins=[AtomicCheckpointIO()],
    )
    if resume:
        log.info("resuming from %s (step %d)", resume, int(resume_ckpt["global_step"]))
    log.info(
        "training %s: %d style(s), %d photos, steps %d..%d on %s (%s)",
        name, len(names), len(dm.train_files), int(resume_ckpt["global_step"]) if resume_ckpt else 0,
        int(trainer_kw["max_steps"]), "cuda" if cuda else "cpu", trainer_kw.get("precision"),
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


def _export(
    cfg: DictConfig,
    module: StyleTransferModule,
    plan: Any,
    path: Path,
    run_id: str,
    steps: int,
) -> Path:
    net = getattr(module.net, "_orig_mod", module.net)
    train_config = OmegaConf.to_container(cfg, resolve=True)
    thumbs: list = []
    history: list = []
    if plan is not None:
        from stylenet.finetune import check_untouched, history_entry

        check_untouched(plan, net)
        base_thumbs = list(plan.base.get("style_thumbnails") or [])
        thumbs = [base_thumbs[i] if i < len(base_thumbs) else None for i in range(len(plan.names))]
        for spec, row in zip(plan.new_specs, plan.new_rows, strict=True):
            thumbs[row] = make_thumbnail(spec.path())
        history = [*plan.base.get("history", []), history_entry(plan, steps)]
        # The grown bank's style entries: the base's, then the new ones.
        base_styles = dict((plan.base.get("train_config") or {}).get("style") or {})
        train_config["style"] = {**base_styles, **train_config.get("style", {})}
    else:
        thumbs = [make_thumbnail(s.path()) for s in module.style_specs]
        history = [{"event": "trained", "date": now_iso(), "styles": list(module.style_names),
                    "steps": steps}]  # fmt: skip
    payload = build_payload(
        net, module.style_names, train_config=train_config, trained_steps=steps, run_id=run_id,
        thumbnails=thumbs, history=history,
    )  # fmt: skip
    overwrite = path.exists()  # choose_export_path allowed it (own file, or export.overwrite)
    save_checkpoint(payload, path, overwrite=overwrite)
    log.debug("exported inference checkpoint: %s", path)
    return path
