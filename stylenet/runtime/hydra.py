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


def distill_name(teacher, model) -> str:  # noqa: ANN001
    """A distilled student's run name: ``<teacher stem>-<model choice>`` (``bank_all-fast``), so
    it never resumes or replaces the teacher's own run or file."""
    return _safe(f"{Path(str(teacher)).stem}-{model}")


def cpu_workers(cap: int = 8) -> int:
    """DataLoader workers: leave one core to the training process, at most ``cap``."""
    return max(0, min(int(cap), (os.cpu_count() or 1) - 1))


def register_resolvers() -> None:
    for name, fn in (
        ("if_cuda", if_cuda),
        ("if_finetune", if_finetune),
        ("run_name", run_name),
        ("cpu_workers", cpu_workers),
        ("distill_name", distill_name),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


# ----------------------------------------------------------------------------- launching a run

# Keys that moved, by their old spelling: still accepted on the command line (with a note), so
# the commands users typed keep working. The trainer group holds Trainer arguments only.
MOVED_KEYS = {
    "trainer.compile": "speed.compile",
    "trainer.channels_last": "speed.channels_last",
    "trainer.progress_refresh_rate": "speed.progress_refresh_rate",
}


def pick_hardware() -> str:
    """``hardware=auto`` at launch: ``gpu`` when a CUDA device is present, else ``cpu``."""
    return "gpu" if cuda_available() else "cpu"


def launch_overrides(
    overrides: Sequence[str], config_name: str = "train"
) -> tuple[list[str], list[str]]:
    """The overrides a run is composed with, and notes on what changed: old spellings of moved
    keys renamed, ``hardware`` picked when it is not given or ``auto`` (a sweep over named
    choices, ``hardware=cpu,gpu``, is left as it is), and ``plan=grow`` when ``finetune.from``
    names a bank and no plan is given; ``style=<image file>`` becomes a style named after the
    file. Every command applies this before Hydra
    composes, and so do the tests, so a composed config never depends on where it is printed
    unless it asks to (``hardware=auto``)."""
    out, notes = [], []
    hardware = plan = None
    grows = False
    for o in overrides:
        key, eq, value = o.partition("=")
        bare = key.lstrip("+~")
        if eq and bare == "plan":
            plan = value
        if eq and bare == "finetune.from" and value.strip() not in ("", "null", "None"):
            grows = True
        if eq and bare in MOVED_KEYS:
            new = MOVED_KEYS[bare]
            notes.append(f"{bare} is now {new}")
            o = f"{key[: len(key) - len(bare)]}{new}={value}"
        if eq and bare == "hardware":
            hardware = value
            if value.strip() == "auto":
                continue
        # (Only where style is a config group: the training config. The optimization command's
        # style= is a plain path already.)
        if eq and key == "style" and config_name == "train" and _is_image_path(value):
            # An image file as the style: one style named after the file, without a YAML.
            path = Path(os.path.expanduser(value.strip()))
            quoted = str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'")
            out += ["~style", f"+style.{_safe(path.stem)}.image='{quoted}'"]
            continue
        out.append(o)
    if hardware is None or hardware.strip() == "auto":
        out.append(f"hardware={pick_hardware()}")
    if grows and plan is None:
        out.append("plan=grow")
    return out, notes


def _is_image_path(value: str) -> bool:
    from stylenet.io.images import IMAGE_EXTENSIONS

    v = value.strip()
    return not v.startswith("[") and Path(v).suffix.lower() in IMAGE_EXTENSIONS


def launch_argv(argv: Sequence[str], config_name: str = "train") -> tuple[list[str], list[str]]:
    """A Hydra command line with ``launch_overrides`` applied to its overrides (flags and their
    values kept where they are). A line that does not parse is returned as it is, and nothing is
    printed here: the usage check that follows reports it."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    argv = list(argv)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:
        return argv, []
    given = list(args.overrides)
    new, notes = launch_overrides(given, config_name)
    out, j = [], 0
    for a in argv:
        if j < len(given) and a == given[j]:
            j += 1
            continue
        out.append(a)
    return out + new, notes


def compose_config(
    config_name: str,
    overrides: Sequence[str],
    config_dir: Path = CONFIG_DIR,
    return_hydra_config: bool = False,
):
    """A config composed in-process as the command would compose it (``launch_overrides``
    applied first): benchmarks and tests that run training without the command line."""
    from hydra import compose, initialize_config_dir

    overrides, _ = launch_overrides(overrides, config_name)
    if not return_hydra_config:
        # A config without its Hydra node: the node an earlier resolved_run_config set in this
        # process (its command-line overrides, read by build._explicit_overrides) is not this
        # config's, and must not be read as if it were.
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        return compose(config_name, overrides, return_hydra_config=return_hydra_config)


def resolved_run_config(config_name: str, overrides: Sequence[str]):  # noqa: ANN201
    """The resolved config of one run, composed in-process as its command line would compose it,
    with the Hydra node set for ``${hydra:...}`` interpolations (the run name) and then dropped:
    what benchmarks and studies pass to ``stylenet.training.run.train``."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    composed = compose_config(config_name, overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(composed)
    with open_dict(composed):
        del composed["hydra"]
    return OmegaConf.create(OmegaConf.to_container(composed, resolve=True))
