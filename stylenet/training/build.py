"""The objects a training run needs, built from a composed config: the data module, the
LightningModule and the Trainer's arguments; library option names mapped back to config keys."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stylenet.data.photos import ContentDataModule
from stylenet.data.styles import StyleSpec
from stylenet.errors import (
    OptionError,
    StylenetError,
)
from stylenet.training.module import StyleTransferModule


def instantiate_node(cfg: DictConfig, key: str, **kw: Any) -> Any:  # noqa: ANN401
    """``hydra.utils.instantiate`` of the config node ``key`` (its ``_target_`` with its keys as
    arguments, plus ``kw``). Hydra wraps whatever the target raises; the target's own error is
    raised instead, and a key the target does not take is one line naming it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg[key], **kw, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            name = str(cause).rsplit("argument", 1)[-1].strip(" '")
            raise OptionError(
                f"no such key for {cfg[key]._target_}", option=f"{key}.{name}"
            ) from None
        if cause is not None:
            raise cause from None
        raise


def build_datamodule(cfg: DictConfig) -> ContentDataModule:
    """The ``data`` group instantiated (``_target_``: ``ContentDataModule``), with the sample
    grid's photos and the seed from their own keys."""
    try:
        return instantiate_node(
            cfg, "data", num_samples=cfg.samples.num_photos, sample_size=cfg.samples.size,
            seed=cfg.seed,
        )  # fmt: skip
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
            colour_weight=lc.colour_weight,
            vgg_weights=lc.vgg.weights,
            vgg_weights_path=lc.vgg.get("weights_path"),
            style_size=cfg.style_size,
            lr=lr if lr is not None else oc.lr,
            betas=tuple(oc.betas),
            scheduler=oc.scheduler,
            warmup_steps=oc.warmup_steps,
            min_lr_ratio=oc.min_lr_ratio,
            channels_last=bool(cfg.speed.channels_last),
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
    """The Trainer's arguments (the ``trainer`` group without its ``_target_``), the compile mode
    and the progress bar's refresh rate (``speed``)."""
    kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    kw.pop("_target_", None)
    compile_mode = cfg.speed.compile
    # YAML 1.1 reads a bare on/off as a boolean: accept either spelling.
    compile_mode = {True: "on", False: "off"}.get(compile_mode, str(compile_mode))
    refresh = int(cfg.speed.progress_refresh_rate or 1)
    if compile_mode not in ("auto", "on", "off"):
        raise OptionError(f"must be auto, on or off; got {compile_mode!r}", option="speed.compile")
    vgg_dtype = str(cfg.speed.get("vgg_dtype", "auto"))
    if vgg_dtype not in ("auto", "fp32", "bf16"):
        raise OptionError(
            f"must be auto, fp32 or bf16; got {vgg_dtype!r}", option="speed.vgg_dtype"
        )
    kw["max_steps"] = int(kw["max_steps"])  # validate_train_config checked it
    return kw, compile_mode, refresh


def build_trainer(cfg: DictConfig, **run_args: Any) -> Any:  # noqa: ANN401  (a pl.Trainer)
    """The ``trainer`` group instantiated (``_target_``: pytorch_lightning.Trainer), with what the
    run adds (``run_args``: logger, callbacks, plugins, ...)."""
    return instantiate_node(cfg, "trainer", max_steps=int(cfg.trainer.max_steps), **run_args)


def _explicit_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, OmegaConfBaseException):  # not inside a Hydra app
        return []
