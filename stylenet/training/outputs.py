"""Where a run's exported checkpoint goes: never over a file this run did not write (a fresh
``<name>-2.pt`` instead, unless ``export.overwrite=true``), and the run's own state file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stylenet.checkpoints.format import (
    build_payload,
    read_raw,
    save_checkpoint,
)
from stylenet.errors import (
    CheckpointError,
)
from stylenet.training.module import StyleTransferModule

log = logging.getLogger("stylenet.train")

RUN_STATE = "run.json"


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
    thumbs, history = plan.export_parts(module, steps, train_config)
    payload = build_payload(
        net, module.style_names, train_config=train_config, trained_steps=steps, run_id=run_id,
        thumbnails=thumbs, history=history,
    )  # fmt: skip
    payload.update(plan.export_extra(module, steps, train_config))
    overwrite = path.exists()  # choose_export_path allowed it (own file, or export.overwrite)
    save_checkpoint(payload, path, overwrite=overwrite)
    log.debug("exported inference checkpoint: %s", path)
    return path
