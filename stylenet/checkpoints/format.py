"""Self-describing inference checkpoints: network weights + model arguments + style names.

The file is a plain dict of tensors and Python primitives, so ``torch.load(path,
weights_only=True)`` reads it without running pickle code, and ``load_network`` rebuilds the
network from the file alone (nanoGPT's ``model_args`` pattern). Keys:

- ``format`` ("stylenet.inference"), ``format_version`` (2; version 1 files still load),
  ``stylenet_version``, ``created`` (UTC, ISO 8601);
- ``model_args`` (``TransformerNet`` keyword arguments), ``style_names`` (one per gamma/beta
  row, in row order), ``state_dict`` (fp32; never the frozen VGG);
- ``train_config`` (the resolved training config), ``trained_steps``;
- ``run_id``: the training run that wrote the file (a re-export of the same run may replace it;
  nothing else may without being told to);
- ``style_thumbnails``: one small JPEG per style (uint8 tensor, or an empty tensor), for UIs;
- ``history``: what happened to the bank, oldest first (trained, fine-tuned with the base file's
  sha256, renamed, removed, reordered, merged), each with its date.
"""

from __future__ import annotations

import datetime as _dt
import os
import pickle
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from stylenet.errors import CheckpointError, OutputExistsError
from stylenet.io.files import TORCH_LOAD_ERRORS, encode_image, save_torch
from stylenet.nn.network import TransformerNet, build_model
from stylenet.nn.predictor import PredictorConfig, StylePredictor

FORMAT = "stylenet.inference"
FORMAT_VERSION = 2
PREDICTOR_KEY = "predictor"

# Thumbnails: 160 px on the longer side at JPEG quality 85 is about 6-10 kB per style (a 10-style
# bank grows by ~80 kB on 6.8 MB) and is sharp enough for a gallery tile.
THUMBNAIL_SIZE = 160
THUMBNAIL_QUALITY = 85


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def make_thumbnail(image_path: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> Tensor:
    """A small JPEG of a painting, as a uint8 tensor (safe for ``weights_only`` loading)."""
    from stylenet.io.images import load_image

    img = load_image(image_path)
    img.thumbnail((size, size), Image.LANCZOS)
    data = encode_image(img, "JPEG", THUMBNAIL_QUALITY)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def thumbnail_bytes(ckpt: dict[str, Any], index: int) -> bytes | None:
    thumbs = ckpt.get("style_thumbnails") or []
    if index < len(thumbs) and thumbs[index] is not None and thumbs[index].numel():
        return bytes(thumbs[index].numpy().tobytes())
    return None


def build_payload(
    model: TransformerNet,
    style_names: Sequence[str],
    *,
    train_config: dict[str, Any] | None = None,
    trained_steps: int | None = None,
    run_id: str | None = None,
    thumbnails: Sequence[Tensor | None] | None = None,
    history: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from stylenet import __version__

    if len(style_names) != model.num_styles:
        raise CheckpointError(f"{len(style_names)} style names for {model.num_styles} styles")
    if len(set(style_names)) != len(style_names):
        raise CheckpointError(f"style names must be unique, got {list(style_names)}")
    thumbs = list(thumbnails) if thumbnails is not None else [None] * len(style_names)
    if len(thumbs) != len(style_names):
        raise CheckpointError(f"{len(thumbs)} thumbnails for {len(style_names)} styles")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stylenet_version": __version__,
        "created": now_iso(),
        "model_args": model.config.to_dict(),
        "style_names": list(style_names),
        "state_dict": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "train_config": train_config or {},
        "style_thumbnails": [
            t if t is not None else torch.empty(0, dtype=torch.uint8) for t in thumbs
        ],
        "history": list(history or []),
    }
    if trained_steps is not None:
        payload["trained_steps"] = int(trained_steps)
    if run_id is not None:
        payload["run_id"] = str(run_id)
    return payload


def save_checkpoint(
    payload: dict[str, Any], path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write a checkpoint dict atomically. An existing file is replaced only with ``overwrite``,
    and then kept once as ``<name>.pt.bak``."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise OutputExistsError(f"{path} exists")
        shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
    return save_torch(payload, path)


def export_inference_checkpoint(
    model: TransformerNet,
    style_names: list[str],
    path: str | os.PathLike,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = True,
    **kw: Any,
) -> Path:
    """Build and write a checkpoint in one call (``extra`` keys are added as they are)."""
    payload = build_payload(model, style_names, train_config=train_config, **kw)
    payload.update(extra or {})
    return save_checkpoint(payload, path, overwrite=overwrite)


# ----------------------------------------------------------------------------- reading


def _zip_mentions(p: Path, needle: bytes) -> bool:
    """Whether the pickle inside a torch zip file mentions ``needle`` (read as bytes, never
    unpickled)."""
    try:
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                if name.endswith("data.pkl"):
                    return needle in z.read(name)
    except (zipfile.BadZipFile, OSError, KeyError):
        pass
    return False


def read_raw(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one clear error for every way a file can be wrong."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{what} {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"{what} {p} is a folder, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{what} {p} is an empty file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {p}: {e.strerror or e}") from e
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the offending class ("Unsupported global") only for real checkpoints that
        # hold Python objects; random bytes and foreign pickles fail on an opcode instead.
        if "Unsupported global" in str(e):
            kind = (
                " (a Lightning training checkpoint)"
                if _zip_mentions(p, b"pytorch-lightning_version")
                else ""
            )
            raise CheckpointError(
                f"{p} holds Python objects other than tensors and plain values{kind}; loading it "
                "could run code, so stylenet refuses it"
            ) from e
        raise CheckpointError(f"{p} is not a PyTorch checkpoint file") from e
    except TORCH_LOAD_ERRORS as e:  # truncated zip, text file, random bytes: torch's errors vary
        if head.startswith(b"PK"):
            raise CheckpointError(
                f"{p} is truncated or damaged (its zip archive is incomplete); "
                "copy or export it again"
            ) from e
        raise CheckpointError(f"{p} is not a PyTorch checkpoint file") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p} does not hold a checkpoint dictionary")
    return ckpt


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an exported inference checkpoint."""
    p = Path(path)
    ckpt = read_raw(p)
    if ckpt.get("format") != FORMAT:
        if "pytorch-lightning_version" in ckpt:
            raise CheckpointError(
                f"{p} is a Lightning training checkpoint; use the exported checkpoints/<name>.pt "
                "(training exports one at its end) for inference"
            )
        raise CheckpointError(
            f"{p} is not a stylenet inference checkpoint (no '{FORMAT}' format tag)"
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has format version {ckpt['format_version']}; this stylenet reads up to "
            f"{FORMAT_VERSION}: upgrade stylenet"
        )
    for key in ("model_args", "style_names", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{p} lacks '{key}'")
    ckpt.setdefault("history", [])
    ckpt.setdefault("style_thumbnails", [])
    return ckpt


def network_from_checkpoint(
    ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint"
) -> TransformerNet:
    try:
        model = build_model(ckpt["model_args"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model arguments {ckpt['model_args']} ({e})") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: weights do not fit the stored model arguments ({first})"
        ) from e
    if len(ckpt["style_names"]) != model.num_styles:
        raise CheckpointError(
            f"{path}: {len(ckpt['style_names'])} style names for {model.num_styles} styles"
        )
    return model.eval()


def load_network(path: str | os.PathLike) -> tuple[TransformerNet, list[str], dict[str, Any]]:
    """Rebuild the network from a checkpoint; returns (eval-mode network, style names, file)."""
    ckpt = read_checkpoint(path)
    return network_from_checkpoint(ckpt, path), list(ckpt["style_names"]), ckpt


def predictor_payload(
    predictor: StylePredictor, trained_steps: int = 0, trained_on: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``predictor`` entry of a checkpoint (plain tensors and values)."""
    return {
        "args": predictor.config.to_dict(),
        "state_dict": {
            k: v.detach().float().cpu().clone() for k, v in predictor.state_dict().items()
        },
        "trained_steps": int(trained_steps),
        "trained_on": dict(trained_on or {}),
    }


def read_predictor(
    ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint"
) -> StylePredictor | None:
    """The checkpoint's style predictor (eval mode) whatever network it drives, or None when it
    has none."""
    entry = ckpt.get(PREDICTOR_KEY)
    if not entry:
        return None
    try:
        predictor = StylePredictor(PredictorConfig.from_dict(entry["args"]))
        predictor.load_state_dict(entry["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: its style predictor does not load ({first})") from e
    return predictor.eval()


def predictor_from_checkpoint(
    ckpt: dict[str, Any], net: TransformerNet, path: str | os.PathLike = "checkpoint"
) -> StylePredictor | None:
    """The checkpoint's style predictor for ``net`` (eval mode), or None when it has none."""
    predictor = read_predictor(ckpt, path)
    if predictor is None:
        return None
    if not predictor.fits(net):
        raise CheckpointError(
            f"{path}: its style predictor was made for a network with other norm widths"
        )
    return predictor.eval()
