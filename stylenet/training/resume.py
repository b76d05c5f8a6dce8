"""Resuming a run: which Lightning checkpoint to continue from (``ckpt_path``: auto, last, null or a
path; a file cut off mid-write falls back to the previous one) and the check that it was trained
with the same model and styles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stylenet.checkpoints.format import (
    read_raw,
)
from stylenet.errors import (
    CheckpointError,
    TrainingError,
)
from stylenet.nn.network import complete_model_args

log = logging.getLogger("stylenet.train")


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
