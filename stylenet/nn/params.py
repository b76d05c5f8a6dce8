"""Style parameters: the gamma/beta that every conditional norm of a network applies to a batch.

A style is nothing but these numbers, one (gamma, beta) pair of channel vectors per norm layer
(Dumoulin et al. 2017, Sec. 2.2). Every way of choosing a style produces a ``StyleParams`` and
the network reads it one norm at a time (``affine``), so what comes after (strength, tiling,
compile, export, the server's batching) never needs to know where the parameters came from:

- ``RowMix``: the rows of the network's own table, mixed by a ``[B, S]`` share vector per sample
  or by ``[B, S, H, W]`` share maps (a mask); a one-hot mix is a bank style. Extra rows
  (``extra``: per layer a ``[K, C]`` gamma and beta, e.g. predicted from a painting) widen the
  table to ``S + K`` columns for this batch only, so they mix with the bank's rows;
- ``LayerParams``: the parameters given per layer (``[B, C]`` each), e.g. what a network that
  predicts style parameters returns.

A network passes each norm its own index (its position in ``TransformerNet.norms()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Affine = tuple[Tensor, Tensor]


class StyleParams:
    """Where a network's conditional norms get their gamma/beta for one batch."""

    def affine(self, norm, size: tuple[int, int]) -> Affine:  # noqa: ANN001
        """``(gamma, beta)`` for ``norm`` (a ``ConditionalInstanceNorm2d``), each ``[B, C, 1, 1]``
        or ``[B, C, H, W]`` for a feature map of ``size``."""
        raise NotImplementedError

    def check(self, num_styles: int, batch: int) -> None:
        """Raise ``ValueError`` unless these parameters fit a network of ``num_styles`` rows and
        a batch of ``batch`` images."""
        raise NotImplementedError

    def padded(self, multiple: int) -> StyleParams:
        """The parameters for an input padded to a multiple of ``multiple`` (share maps are
        padded like the image; per-sample parameters need nothing)."""
        return self


class RowMix(StyleParams):
    """A convex mix of the network's rows (and of ``extra`` rows, after them)."""

    # A plain class, not a dataclass: torch.compile traces its construction inside the network.
    def __init__(self, mix: Tensor, extra: Sequence[Affine] | None = None) -> None:
        self.mix = mix
        self.extra = extra

    def check(self, num_styles: int, batch: int) -> None:
        width = num_styles + (int(self.extra[0][0].shape[0]) if self.extra else 0)
        if self.mix.shape[0] != batch or self.mix.shape[1] != width:
            raise ValueError(
                f"mix must be [B={batch}, S={width}, ...], got {tuple(self.mix.shape)}"
            )

    def padded(self, multiple: int) -> RowMix:
        if self.mix.dim() != 4:
            return self
        from stylenet.io.images import pad_to_multiple

        return RowMix(pad_to_multiple(self.mix, multiple, mode="replicate"), self.extra)

    def affine(self, norm, size: tuple[int, int]) -> Affine:  # noqa: ANN001
        if not self.extra:
            return norm.affine(self.mix, size)
        g_extra, b_extra = self.extra[norm.index]
        gamma = torch.cat([norm.gamma, g_extra.to(norm.gamma)], 0)
        beta = torch.cat([norm.beta, b_extra.to(norm.beta)], 0)
        return mix_rows(self.mix, gamma, beta, size)


class LayerParams(StyleParams):
    """Parameters given per layer: ``gammas[i]`` and ``betas[i]`` are ``[B, C_i]`` for the
    ``i``-th norm of the network."""

    def __init__(self, gammas: Sequence[Tensor], betas: Sequence[Tensor]) -> None:
        self.gammas = list(gammas)
        self.betas = list(betas)

    def check(self, num_styles: int, batch: int) -> None:
        del num_styles  # explicit parameters do not use the network's rows
        if len(self.gammas) != len(self.betas):
            raise ValueError(f"{len(self.gammas)} gammas but {len(self.betas)} betas")
        given = int(self.gammas[0].shape[0])
        if given != batch:
            raise ValueError(f"style parameters are for a batch of {given}, not {batch}")

    def affine(self, norm, size: tuple[int, int]) -> Affine:  # noqa: ANN001
        del size
        g, b = self.gammas[norm.index], self.betas[norm.index]
        if g.shape[-1] != norm.channels:
            raise ValueError(
                f"norm {norm.index} has {norm.channels} channels, its parameters {g.shape[-1]}"
            )
        return g.to(norm.gamma)[:, :, None, None], b.to(norm.beta)[:, :, None, None]


def mix_rows(mix: Tensor, gamma: Tensor, beta: Tensor, size: tuple[int, int]) -> Affine:
    """``mix`` (``[B, S]`` or ``[B, S, H, W]``) applied to ``[S, C]`` tables of gamma and beta."""
    w = mix if mix.dtype == gamma.dtype else mix.to(gamma.dtype)
    if w.dim() == 2:
        return (w @ gamma)[:, :, None, None], (w @ beta)[:, :, None, None]
    if w.shape[-2:] != size:
        w = F.interpolate(w, size=size, mode="bilinear", align_corners=False)
    return torch.einsum("bshw,sc->bchw", w, gamma), torch.einsum("bshw,sc->bchw", w, beta)


def as_params(style: Tensor | StyleParams) -> StyleParams:
    """A mix tensor is the common case: the rows of the network mixed by it."""
    return style if isinstance(style, StyleParams) else RowMix(style)
