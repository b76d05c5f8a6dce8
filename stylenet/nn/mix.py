"""Style specs: how a user names a style, or a mix of styles, of a checkpoint.

A *mix* is a vector of non-negative shares, one per style row, summing to 1: the network blends
the gamma/beta rows of its conditional instance norms with it (Dumoulin et al. 2017, Sec. 2.2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from stylenet.errors import StyleSpecError

StyleLike = str | int | Mapping[str, float] | Sequence[float] | Tensor


# Error messages quote what the user wrote, cut to this many characters: a message names the
# problem in one line, it does not echo a 10 kB form field back.
QUOTE_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)``, cut to ``QUOTE_CHARS`` characters with a note of the full length."""
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    return f"{text[: QUOTE_CHARS - 3]}...' ({len(str(value))} characters)"


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}:{n}" for i, n in enumerate(names))


def style_index(token: str | int, names: Sequence[str]) -> int:
    """A style's row from its name or index (``"2"`` and ``2`` both work)."""
    S = len(names)
    tok = str(token).strip()
    if tok.lstrip("-").isdigit():
        i = int(tok)
        if not 0 <= i < S:
            raise StyleSpecError(
                f"style index {i} out of range 0..{S - 1} (styles: {_listing(names)})"
            )
        return i
    if tok not in names:
        raise StyleSpecError(f"unknown style {shown(tok)}; available: {_listing(names)}")
    return list(names).index(tok)


def parse_mix(spec: StyleLike, names: Sequence[str]) -> Tensor:
    """A style spec -> its mix, ``[S]`` float32 summing to 1.

    Accepts a name (``starry_night``), an index (``2`` or ``"2"``), a mix
    (``"starry_night=0.7,the_scream=0.3"``, shares normalised to sum to 1), an equal mix
    (``"a,b"``), a mapping ``{name: share}`` or a vector of shares.
    """
    S = len(names)
    w = torch.zeros(S, dtype=torch.float64)
    if isinstance(spec, Tensor) or (isinstance(spec, Sequence) and not isinstance(spec, str)):
        v = torch.as_tensor(spec, dtype=torch.float64).flatten()
        if v.numel() != S:
            raise StyleSpecError(f"a vector of {v.numel()} shares for {S} styles")
        w = v.clone()
    elif isinstance(spec, Mapping):
        for k, v in spec.items():
            w[style_index(str(k), names)] += float(v)
    elif isinstance(spec, int):
        w[style_index(spec, names)] = 1.0
    else:
        text = str(spec).strip()
        if not text:
            raise StyleSpecError(f"empty style spec; available: {_listing(names)}")
        for part in [p for p in text.split(",") if p.strip()]:
            if "=" in part:
                k, v = part.split("=", 1)
                try:
                    val = float(v)
                except ValueError as e:
                    raise StyleSpecError(f"bad share {shown(v)} in style spec {shown(text)}") from e
            else:
                k, val = part, 1.0
            w[style_index(k, names)] += val
    if not torch.isfinite(w).all():
        raise StyleSpecError("style shares must be finite numbers")
    if (w < 0).any():
        raise StyleSpecError(f"style shares must not be negative: {shown(spec)}")
    if w.sum() <= 0:
        raise StyleSpecError(f"style shares are all zero: {shown(spec)}")
    return (w / w.sum()).float()


def parse_style_spec(spec: StyleLike, names: Sequence[str]) -> Tensor:
    """Earlier name of ``parse_mix``."""
    return parse_mix(spec, names)
