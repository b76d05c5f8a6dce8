"""Self-describing inference checkpoints: network weights + model arguments + style names.

The file is a plain dict of tensors and Python primitives, so ``torch.load(path,
weights_only=True)`` reads it without running pickle code, and ``load_network`` rebuilds the
network from the file alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from stylenet.model import TransformerNet
from stylenet.weights import save_atomic

FORMAT = "stylenet.inference"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def export_inference_checkpoint(
    model: TransformerNet,
    style_names: list[str],
    path: str | os.PathLike,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep_previous: bool = True,
) -> Path:
    if len(style_names) != model.num_styles:
        raise CheckpointError(f"{len(style_names)} style names for {model.num_styles} styles")
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_args": model.config.to_dict(),
        "style_names": list(style_names),
        "state_dict": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "train_config": train_config or {},
        **(extra or {}),
    }
    if keep_previous and path.exists():
        # Never lose a trained network to a later run of the same name: keep one backup.
        shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
    save_atomic(payload, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle that needs code to load
        raise CheckpointError(
            f"{p} is not a readable stylenet checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if isinstance(ckpt, dict) and "pytorch-lightning_version" in ckpt:
            raise CheckpointError(
                f"{p} is a Lightning training checkpoint; use the exported checkpoints/<name>.pt "
                "(or scripts/train.py's export) for inference"
            )
        raise CheckpointError(
            f"{p} is not a stylenet inference checkpoint (no '{FORMAT}' format tag)"
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p} has format version {ckpt['format_version']}; upgrade stylenet")
    for key in ("model_args", "style_names", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{p} lacks '{key}'")
    return ckpt


def load_network(path: str | os.PathLike) -> tuple[TransformerNet, list[str], dict[str, Any]]:
    """Rebuild the network from a checkpoint; returns (eval-mode network, style names, file)."""
    ckpt = read_checkpoint(path)
    model = TransformerNet(**ckpt["model_args"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored model arguments ({e})") from e
    names = list(ckpt["style_names"])
    if len(names) != model.num_styles:
        raise CheckpointError(f"{path}: {len(names)} style names for {model.num_styles} styles")
    return model.eval(), names, ckpt
