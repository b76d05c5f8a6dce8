"""Managing the styles of a bank: list, rename, remove, reorder and merge rows of a checkpoint.

A bank's styles are the rows of its conditional instance norms' gamma/beta (one row per style,
named by ``style_names``); everything else is shared. Every operation works on the checkpoint
dict and returns a new one (its ``history`` records what was done and when), so the network of
every kept style gives exactly the output it gave before. ``python -m stylenet.bank`` is the
command (``stylenet.cli.bank``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stylenet.checkpoints.format import (
    PREDICTOR_KEY,
    network_from_checkpoint,
    now_iso,
    predictor_from_checkpoint,
    thumbnail_bytes,
)
from stylenet.errors import BankError, StylenetError
from stylenet.nn.mix import style_index
from stylenet.nn.network import TransformerNet, complete_model_args

# Names end up in style specs ("a=0.7,b=0.3") and file names: letters, digits, _ - . only, and
# not all digits (a bare number is read as an index).
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.isdigit():
        raise BankError(
            f"style name {name!r} must use letters, digits, '_', '-' or '.' and not be a number"
        )
    return name


def describe(ckpt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per style: index, name, whether a thumbnail is stored, and the event that added
    it (from the history, when known)."""
    added: dict[str, str] = {}
    for ev in ckpt.get("history", []):
        for n in ev.get("styles", []) + ev.get("added", []):
            added.setdefault(n, f"{ev.get('event', '?')} {ev.get('date', '')[:10]}".strip())
    return [
        {
            "index": i,
            "name": n,
            "thumbnail": thumbnail_bytes(ckpt, i) is not None,
            "added": added.get(n, ""),
        }
        for i, n in enumerate(ckpt["style_names"])
    ]


def _with_rows(
    ckpt: dict[str, Any], rows: Sequence[int], names: Sequence[str], event: dict
) -> dict:
    """A copy of ``ckpt`` keeping gamma/beta rows ``rows`` (in that order) under ``names``."""
    out = copy.copy(ckpt)
    idx = torch.tensor(list(rows), dtype=torch.long)
    out["state_dict"] = {
        k: (v.index_select(0, idx).clone() if TransformerNet.is_row_key(k) else v)
        for k, v in ckpt["state_dict"].items()
    }
    out["style_names"] = list(names)
    out["model_args"] = {**ckpt["model_args"], "num_styles": len(rows)}
    thumbs = list(ckpt.get("style_thumbnails") or [])
    out["style_thumbnails"] = [
        thumbs[i] if i < len(thumbs) else torch.empty(0, dtype=torch.uint8) for i in rows
    ]
    out["history"] = [*ckpt.get("history", []), {**event, "date": now_iso()}]
    network_from_checkpoint(out, "result")  # the edited file must rebuild
    return out


def upgrade(ckpt: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A checkpoint of an earlier format brought to the current one: thumbnails made from the
    paintings its training config names (where they can be found). Returns it and the names
    that still have no thumbnail."""
    from stylenet.checkpoints.format import FORMAT_VERSION, make_thumbnail
    from stylenet.data.styles import spec_from_entry
    from stylenet.errors import StyleError

    out = copy.copy(ckpt)
    entries = (ckpt.get("train_config") or {}).get("style") or {}
    thumbs = list(ckpt.get("style_thumbnails") or [])
    missing = []
    new = []
    for i, name in enumerate(ckpt["style_names"]):
        t = thumbs[i] if i < len(thumbs) else None
        if t is None or not t.numel():
            try:
                t = make_thumbnail(
                    spec_from_entry(name, entries.get(name) or {"image": name}, warn=False).path()
                )
            except (StyleError, StylenetError):
                t = torch.empty(0, dtype=torch.uint8)
                missing.append(name)
        new.append(t)
    out["style_thumbnails"] = new
    out["format_version"] = FORMAT_VERSION
    out["history"] = [*ckpt.get("history", []),
                      {"event": "upgraded", "date": now_iso(), "from_version": ckpt.get("format_version", 1)}]  # fmt: skip
    return out, missing


def rename(ckpt: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    names = list(ckpt["style_names"])
    i = style_index(old, names)
    check_name(new)
    if new in names and names.index(new) != i:
        raise BankError(f"the bank already has a style named {new!r}")
    before = names[i]
    names[i] = new
    return _with_rows(ckpt, range(len(names)), names,
                      {"event": "renamed", "from": before, "to": new, "row": i})  # fmt: skip


def remove(ckpt: dict[str, Any], which: Sequence[str]) -> dict[str, Any]:
    names = list(ckpt["style_names"])
    drop = sorted({style_index(w, names) for w in which})
    keep = [i for i in range(len(names)) if i not in drop]
    if not keep:
        raise BankError("removing every style would leave an empty bank")
    return _with_rows(ckpt, keep, [names[i] for i in keep],
                      {"event": "removed", "styles": [names[i] for i in drop]})  # fmt: skip


def reorder(ckpt: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """``order`` names every style once (names or indices), in the new order."""
    names = list(ckpt["style_names"])
    rows = [style_index(o, names) for o in order]
    if sorted(rows) != list(range(len(names))):
        missing = [names[i] for i in range(len(names)) if i not in rows]
        twice = sorted({names[i] for i in rows if rows.count(i) > 1})
        detail = "; ".join(
            p for p in (f"missing: {', '.join(missing)}" if missing else "",
                        f"listed twice: {', '.join(twice)}" if twice else "") if p
        )  # fmt: skip
        raise BankError(f"a new order must list every style exactly once ({detail})")
    return _with_rows(ckpt, rows, [names[i] for i in rows],
                      {"event": "reordered", "order": [names[i] for i in rows]})  # fmt: skip


def merge(
    a: dict[str, Any], b: dict[str, Any], a_label: str = "a", b_label: str = "b"
) -> dict[str, Any]:
    """One bank holding the styles of ``a`` then ``b``. Only banks whose shared weights are
    identical can merge (two fine-tunes of one base, say): otherwise one bank's rows would be
    read through the other's convolutions."""
    ma = {k: v for k, v in complete_model_args(a["model_args"]).items() if k != "num_styles"}
    mb = {k: v for k, v in complete_model_args(b["model_args"]).items() if k != "num_styles"}
    if ma != mb:
        raise BankError(f"cannot merge banks of different architectures ({ma} vs {mb})")
    for k, va in a["state_dict"].items():
        if TransformerNet.is_row_key(k):
            continue
        vb = b["state_dict"].get(k)
        if vb is None or vb.shape != va.shape or not torch.equal(va, vb):
            raise BankError(
                f"cannot merge: the banks' shared weights differ (first at {k}); only banks grown "
                "from the same base by affine fine-tuning share them"
            )
    dup = sorted(set(a["style_names"]) & set(b["style_names"]))
    if dup:
        raise BankError(f"both banks have styles named {', '.join(dup)}; rename one first")
    out = copy.copy(a)
    out["state_dict"] = {
        k: (torch.cat([v, b["state_dict"][k]]) if TransformerNet.is_row_key(k) else v)
        for k, v in a["state_dict"].items()
    }
    out["style_names"] = [*a["style_names"], *b["style_names"]]
    out["model_args"] = {**a["model_args"], "num_styles": len(out["style_names"])}
    ta, tb = list(a.get("style_thumbnails") or []), list(b.get("style_thumbnails") or [])
    empty = torch.empty(0, dtype=torch.uint8)
    out["style_thumbnails"] = [
        *(ta[i] if i < len(ta) else empty for i in range(len(a["style_names"]))),
        *(tb[i] if i < len(tb) else empty for i in range(len(b["style_names"]))),
    ]
    tc = dict(a.get("train_config") or {})
    tc["style"] = {**((a.get("train_config") or {}).get("style") or {}),
                   **((b.get("train_config") or {}).get("style") or {})}  # fmt: skip
    out["train_config"] = tc
    out["history"] = [
        *a.get("history", []),
        {"event": "merged", "date": now_iso(), "from": [a_label, b_label],
         "added": list(b["style_names"]), "merged_history": list(b.get("history", []))},
    ]  # fmt: skip
    network_from_checkpoint(out, "result")
    return out


def add_row(
    ckpt: dict[str, Any],
    name: str,
    row: Sequence[tuple[Tensor, Tensor]],
    thumbnail: Tensor | None = None,
    event: dict | None = None,
) -> dict[str, Any]:
    """A copy of ``ckpt`` with one more style: ``row`` gives each norm's (gamma, beta) (``[C]``
    or ``[1, C]``), in network order, e.g. what the bank's style predictor gave for a painting."""
    check_name(name)
    if name in ckpt["style_names"]:
        raise BankError(f"the bank already has a style named {name!r}")
    net = network_from_checkpoint(ckpt, "bank")
    norms = net.norms()
    if len(row) != len(norms):
        raise BankError(f"a row for {len(norms)} norms needs {len(norms)} (gamma, beta) pairs")
    prefix = {id(m): k for k, m in net.named_modules()}
    out = copy.copy(ckpt)
    sd = dict(ckpt["state_dict"])
    for n, (g, b) in zip(norms, row, strict=True):
        for key, v in ((f"{prefix[id(n)]}.gamma", g), (f"{prefix[id(n)]}.beta", b)):
            v = v.detach().float().cpu().reshape(1, -1)
            if v.shape[1] != sd[key].shape[1]:
                raise BankError(f"{key}: {v.shape[1]} values for {sd[key].shape[1]} channels")
            sd[key] = torch.cat([sd[key], v])
    out["state_dict"] = sd
    out["style_names"] = [*ckpt["style_names"], name]
    out["model_args"] = {**ckpt["model_args"], "num_styles": len(out["style_names"])}
    thumbs = list(ckpt.get("style_thumbnails") or [])
    thumbs += [torch.empty(0, dtype=torch.uint8)] * (len(ckpt["style_names"]) - len(thumbs))
    out["style_thumbnails"] = [
        *thumbs,
        thumbnail if thumbnail is not None else torch.empty(0, dtype=torch.uint8),
    ]
    out["history"] = [*ckpt.get("history", []),
                      {**(event or {"event": "added"}), "added": [name], "date": now_iso()}]  # fmt: skip
    network_from_checkpoint(out, "result")
    return out


def drop_predictor(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``ckpt`` without its style predictor (every style and weight unchanged)."""
    if not ckpt.get(PREDICTOR_KEY):
        raise BankError("this bank has no style predictor")
    out = copy.copy(ckpt)
    del out[PREDICTOR_KEY]
    out["history"] = [*ckpt.get("history", []), {"event": "predictor removed", "date": now_iso()}]
    return out


def copy_predictor(
    ckpt: dict[str, Any], source: dict[str, Any], label: str, sha256: str | None = None
) -> dict[str, Any]:
    """A copy of ``ckpt`` carrying ``source``'s style predictor (every style and weight of
    ``ckpt`` unchanged), e.g. to keep a predictor after a continued distillation changed the
    network it was trained for. Its predicted rows are those it gave before: whether they still
    suit the new convolutions is for ``stylenet-evaluate --style-images`` to say, and the history
    records whether the two networks' shared weights are identical."""
    entry = source.get(PREDICTOR_KEY)
    if not entry:
        raise BankError(f"{label} has no style predictor to copy")
    # Loads and fits this network's norms, or says which of the two it is not for.
    predictor_from_checkpoint({PREDICTOR_KEY: entry}, network_from_checkpoint(ckpt, "bank"), label)
    out = copy.copy(ckpt)
    out[PREDICTOR_KEY] = entry
    event: dict[str, Any] = {"event": "predictor copied", "date": now_iso(), "from": label}
    if sha256:
        event["from_sha256"] = sha256
    event["network"] = "the same" if _same_shared(ckpt, source) else "different"
    if ckpt.get(PREDICTOR_KEY):
        event["replaced"] = "the bank's own predictor"
    out["history"] = [*ckpt.get("history", []), event]
    return out


def _same_shared(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two checkpoints' shared (non-row) weights are identical."""
    sa, sb = a["state_dict"], b["state_dict"]
    keys = {k for k in sa if not TransformerNet.is_row_key(k)}
    if keys != {k for k in sb if not TransformerNet.is_row_key(k)}:
        return False
    return all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in keys)
