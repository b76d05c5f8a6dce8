"""Hydra config helpers: the config folder, the OmegaConf resolvers (registered on import) and the
launch step every command applies to its overrides (``launch_overrides``: the ``hardware`` pick
and the old spellings of moved keys). The check of a composed training config is
``stylenet.training.config``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from stylenet.io.paths import config_dir
from stylenet.runtime.device import cuda_available

CONFIG_DIR = config_dir()


def if_cuda(gpu_value, cpu_value):  # noqa: ANN001, ANN201
    """``${if_cuda:a,b}``: ``a`` when a CUDA device is present, else ``b``. Lets one config hold
    the real GPU recipe and the CPU-sized default without a branch per device in code."""
    return gpu_value if cuda_available() else cpu_value


def if_finetune(base, finetune_value, plain_value):  # noqa: ANN001, ANN201
    """``${if_finetune:${finetune.from},a,b}``: ``a`` when growing a bank, else ``b``."""
    return finetune_value if base not in (None, "", "null") else plain_value


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def run_name(choice, styles=None, base=None) -> str:  # noqa: ANN001
    """The style group's choice as a file-name-safe run name: a bank keeps its name, an ad-hoc
    list ``[a,b]`` becomes ``a+b`` (Hydra records no choice for a list: the selected style
    names are used then). With a fine-tune ``base``, the name is ``<base stem>+<new styles>``."""
    if choice is None and styles is not None:
        choice = list(styles.keys()) if hasattr(styles, "keys") else list(styles)
    if isinstance(choice, (list, tuple, ListConfig)):
        parts: Sequence[str] = [str(c) for c in choice]
    else:
        s = str(choice).strip()
        parts = [p.strip() for p in s.strip("[]").split(",")] if s.startswith("[") else [s]
    name = "+".join(p for p in parts if p)
    if base not in (None, "", "null"):
        name = f"{Path(str(base)).stem}+{name}"
    return _safe(name) or "run"


def cpu_workers(cap: int = 8) -> int:
    """DataLoader workers: leave one core to the training process, at most ``cap``."""
    return max(0, min(int(cap), (os.cpu_count() or 1) - 1))


def register_resolvers() -> None:
    for name, fn in (
        ("if_cuda", if_cuda),
        ("if_finetune", if_finetune),
        ("run_name", run_name),
        ("cpu_workers", cpu_workers),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


# ----------------------------------------------------------------------------- checking a config
