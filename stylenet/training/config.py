"""The check of a composed training config before anything starts: every numeric key a user sets
against what it must be, and the model keys against the network's arguments."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stylenet.errors import OptionError

# Every numeric key a user sets, with what it must be: (kind, lowest, highest, null allowed).
# Checked on the composed config before anything starts, so a wrong value is one line naming its
# key instead of a traceback from deep inside a constructor (or, for a NaN loss weight, a stop at
# step 0).
_INT, _FLOAT = "an integer", "a number"


NUMERIC_KEYS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "seed": (_INT, 0, None, False),
    "style_size": (_INT, 16, 8192, False),
    "checkpoint_every_n_steps": (_INT, 1, None, False),
    "samples.every_n_steps": (_INT, 0, None, False),
    "samples.num_photos": (_INT, 0, 64, False),
    "samples.size": (_INT, 16, 2048, False),
    "data.image_size": (_INT, 16, 8192, False),
    "data.batch_size": (_INT, 1, 4096, False),
    "data.num_workers": (_INT, 0, 256, False),
    "data.min_epoch_samples": (_INT, 0, None, True),
    "model.base_channels": (_INT, 1, 1024, False),
    "model.num_res_blocks": (_INT, 0, 64, False),
    "model.trunk_channels": (_INT, 0, 4096, False),
    "loss.content_weight": (_FLOAT, 0, None, False),
    "loss.style_weight": (_FLOAT, 0, None, False),
    "loss.tv_weight": (_FLOAT, 0, None, False),
    "loss.colour_weight": (_FLOAT, 0, None, False),
    "optim.lr": (_FLOAT, 0, None, False),
    "optim.warmup_steps": (_INT, 0, None, False),
    "optim.min_lr_ratio": (_FLOAT, 0, 1, False),
    "trainer.max_steps": (_INT, 1, None, False),
    "trainer.log_every_n_steps": (_INT, 1, None, False),
    "trainer.num_nodes": (_INT, 1, None, False),
    "trainer.gradient_clip_val": (_FLOAT, 0, None, True),
    "speed.progress_refresh_rate": (_INT, 1, None, False),
    "finetune.max_steps": (_INT, 1, None, False),
    "finetune.affine_lr": (_FLOAT, 0, None, False),
    "finetune.replay": (_FLOAT, 0, 1, False),
}


# Keys whose value must be strictly above ``lowest`` (a learning rate of 0 trains nothing).
_EXCLUSIVE_LOW = {"optim.lr", "finetune.affine_lr"}


def _number(key: str, value: Any, kind: str) -> float:
    if isinstance(value, bool):
        raise OptionError(f"must be {kind}, got {value!r}", option=key)
    if kind == _INT:
        if isinstance(value, float) and value.is_integer():
            return value
        if not isinstance(value, int):
            raise OptionError(f"must be an integer, got {value!r}", option=key)
        return value
    if isinstance(value, str):
        try:
            value = float(value)  # "1e-3" as YAML 1.1 reads it
        except ValueError:
            raise OptionError(f"must be a number, got {value!r}", option=key) from None
    if not isinstance(value, (int, float)):
        raise OptionError(f"must be a number, got {value!r}", option=key)
    if not math.isfinite(value):
        raise OptionError(f"must be a finite number, got {value}", option=key)
    return float(value)


def _range_text(lo: float | None, hi: float | None, exclusive_low: bool) -> str:
    if hi is None:
        return f"above {lo:g}" if exclusive_low else f"at least {lo:g}"
    return f"within {lo:g}..{hi:g}" + (f" (above {lo:g})" if exclusive_low else "")


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ``OptionError`` naming the key of the first value that cannot be right."""
    for key, (kind, lo, hi, nullable) in NUMERIC_KEYS.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except OmegaConfBaseException as e:
            raise OptionError(
                f"cannot be resolved ({str(e).splitlines()[0]})", option=key
            ) from None
        if value is None:
            if nullable or OmegaConf.select(cfg, key, default="absent") == "absent":
                continue
            raise OptionError(f"must be {kind}, got null", option=key)
        v = _number(key, value, kind)
        excl = key in _EXCLUSIVE_LOW
        if (lo is not None and (v < lo or (excl and v <= lo))) or (hi is not None and v > hi):
            raise OptionError(
                f"must be {kind} {_range_text(lo, hi, excl)}, got {value}", option=key
            )
    for name, w in (OmegaConf.select(cfg, "loss.style_layers") or {}).items():
        v = _number(f"loss.style_layers.{name}", w, _FLOAT)
        if v < 0:
            raise OptionError(f"must be 0 or more, got {w}", option=f"loss.style_layers.{name}")
    betas = OmegaConf.select(cfg, "optim.betas")
    if betas is not None:
        bs = list(betas) if isinstance(betas, (list, ListConfig)) else None
        if (
            not bs
            or len(bs) != 2
            or not all(0 <= _number("optim.betas", b, _FLOAT) < 1 for b in bs)
        ):
            raise OptionError(f"must be two numbers within 0..1 (1 excluded), got {betas}",
                              option="optim.betas")  # fmt: skip
    _check_model_keys(cfg)


def _check_model_keys(cfg: DictConfig) -> None:
    from dataclasses import fields

    from stylenet.nn.network import ModelConfig

    known = {f.name for f in fields(ModelConfig)} - {"num_styles"}
    for key in OmegaConf.select(cfg, "model") or {}:
        if key not in known:
            raise OptionError(
                f"unknown model setting; the network takes {', '.join(sorted(known))}",
                option=f"model.{key}",
            )
