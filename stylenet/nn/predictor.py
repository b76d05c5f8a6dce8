"""Style prediction network: any style image -> gamma/beta for every conditional norm.

Ghiasi et al. 2017 ("Exploring the structure of a real-time, arbitrary neural artistic
stylization network", Sec. 3.1) predict the conditional-instance-norm parameters of a transformer
network from a style image through a 100-dimensional bottleneck embedding. Their predictor is an
Inception-v3 trunk; here the features are the statistics of the frozen VGG16 the loss already
has: the per-channel mean and standard deviation of each style layer (relu1_2, relu2_2, relu3_3,
relu4_3: 2 x (64 + 128 + 256 + 512) = 1,920 numbers), the same statistics a Gram matrix
summarises and that AdaIN (Huang & Belongie 2017) transfers directly. A two-layer encoder maps them
to the embedding, one linear layer maps the embedding to every norm's (gamma, beta).

The decoder predicts offsets from ``base`` rows (the mean row of the bank the predictor was
trained for) and starts at zero, so an untrained predictor gives exactly the ``finetune.init=mean``
row, and training only has to learn how a painting departs from the bank's average style.
The predicted parameters are a ``LayerParams`` (``stylenet.nn.params``): a network applies them,
or mixes them with its own rows (``RowMix(extra=...)``), like any other style.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stylenet.nn.params import LayerParams
from stylenet.nn.vgg import DEFAULT_STYLE_LAYERS, LAYERS

# Ghiasi et al. 2017, Sec. 3.1: a 100-dimensional style embedding ("bottleneck").
EMBEDDING = 100
# The encoder's hidden width: between the 1,920 statistics and the 100-d embedding.
HIDDEN = 512
# Standard deviations are taken of variance + this (VGG activations after a ReLU are often
# exactly zero over a whole channel of a flat texture; the square root of 0 has no gradient).
STD_EPS = 1e-5
# Style images are seen at this longer side when their statistics are computed: the size the
# shipped bank's paintings were seen at in training on a CPU (hardware/cpu.yaml style_size).
STYLE_SIZE = 256


def style_statistics(feats: Mapping[str, Tensor], layers: Sequence[str]) -> Tensor:
    """``[B, 2 * sum(C)]``: per layer, the channel means then the channel standard deviations."""
    parts = []
    for n in layers:
        f = feats[n].float()
        var, mean = torch.var_mean(f, dim=(2, 3), unbiased=False)
        parts += [mean, (var + STD_EPS).sqrt()]
    return torch.cat(parts, dim=1)


def stats_width(layers: Sequence[str]) -> int:
    return 2 * sum(LAYERS[n].channels for n in layers)


def floored_spread(spread: Tensor) -> Tensor:
    """Per-value spreads with a floor of a tenth of their median: a value that hardly varies over
    the sample is measured against that, not its own near-zero spread, so a small difference
    does not come out orders of magnitude too large."""
    return spread.clamp_min(max(0.1 * float(spread.median()), 1e-6))


@dataclass(frozen=True)
class PredictorConfig:
    """What rebuilds a predictor from a checkpoint (its ``predictor.args``)."""

    # Channels of each conditional norm of the target network, in network order.
    channels: tuple[int, ...]
    layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    hidden: int = HIDDEN
    embedding: int = EMBEDDING
    style_size: int = STYLE_SIZE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["layers"] = list(self.layers)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> PredictorConfig:
        d = dict(d)
        return PredictorConfig(
            channels=tuple(int(c) for c in d.pop("channels")),
            layers=tuple(str(n) for n in d.pop("layers", DEFAULT_STYLE_LAYERS)),
            **{k: v for k, v in d.items() if k in ("hidden", "embedding", "style_size")},
        )


class StylePredictor(nn.Module):
    """VGG statistics of a style image -> embedding -> per-layer gamma/beta."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        width = stats_width(config.layers)
        total = sum(config.channels)
        # Standardisation of the statistics (set from the training styles: ``set_normalisation``);
        # VGG activations range over four orders of magnitude between relu1_2 and relu4_3.
        self.register_buffer("stat_mean", torch.zeros(width))
        self.register_buffer("stat_std", torch.ones(width))
        self.register_buffer("base_gamma", torch.ones(total))
        self.register_buffer("base_beta", torch.zeros(total))
        self.encoder = nn.Sequential(
            nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.embedding)
        )
        self.decoder = nn.Linear(config.embedding, 2 * total)
        nn.init.zeros_(self.decoder.weight)
        nn.init.zeros_(self.decoder.bias)

    @staticmethod
    def for_network(net: nn.Module, **kw: Any) -> StylePredictor:
        """A predictor for ``net`` (a ``TransformerNet``), starting at the mean of its rows."""
        norms = net.norms()
        p = StylePredictor(PredictorConfig(channels=tuple(n.channels for n in norms), **kw))
        with torch.no_grad():
            p.base_gamma.copy_(torch.cat([n.gamma.detach().float().mean(0) for n in norms]))
            p.base_beta.copy_(torch.cat([n.beta.detach().float().mean(0) for n in norms]))
        return p

    @torch.no_grad()
    def set_normalisation(self, stats: Tensor) -> None:
        """Standardise the statistics by those of ``stats`` ([N, width], N >= 2). A statistic
        that hardly varies over the sample (a channel that is dead for every style seen) is
        divided by a tenth of the median spread instead of its own, so a new image whose value
        differs a little does not send the encoder's input off by orders of magnitude."""
        self.stat_mean.copy_(stats.mean(0))
        self.stat_std.copy_(floored_spread(stats.std(0)))

    def adopt_encoder(self, other: StylePredictor) -> None:
        """Start from ``other``'s standardisation and encoder (a predictor trained for another
        network over the same VGG statistics); this predictor's decoder is left as it is. Raises
        ``ValueError`` naming what differs when the two read different inputs."""
        self._check_same(other, ("layers", "hidden", "embedding", "style_size"))
        with torch.no_grad():
            self.stat_mean.copy_(other.stat_mean)
            self.stat_std.copy_(other.stat_std)
        self.encoder.load_state_dict(other.encoder.state_dict())

    def adopt(self, other: StylePredictor) -> None:
        """Start from all of ``other`` (a trained predictor for a network with these norms).
        Raises ``ValueError`` naming what differs when it does not fit."""
        self._check_same(other, ("channels", "layers", "hidden", "embedding", "style_size"))
        self.load_state_dict(other.state_dict())

    def _check_same(self, other: StylePredictor, fields: Sequence[str]) -> None:
        mine, theirs = self.config, other.config
        for field in fields:
            if getattr(mine, field) != getattr(theirs, field):
                raise ValueError(
                    f"its {field} is {getattr(theirs, field)!r}, this predictor's "
                    f"{getattr(mine, field)!r}"
                )

    def embed(self, stats: Tensor) -> Tensor:
        """``[B, width]`` statistics -> ``[B, embedding]``."""
        return self.encoder((stats.float() - self.stat_mean) / self.stat_std)

    def vector(self, stats: Tensor) -> Tensor:
        """``[B, width]`` statistics -> ``[B, 2 * sum(channels)]``: every norm's gamma, then
        every norm's beta, in network order (the layout of ``bank_rows``)."""
        return torch.cat([self.base_gamma, self.base_beta]) + self.decoder(self.embed(stats))

    def decode(self, embedding: Tensor) -> LayerParams:
        out = self.decoder(embedding)
        total = sum(self.config.channels)
        gamma = self.base_gamma + out[:, :total]
        beta = self.base_beta + out[:, total:]
        return LayerParams(
            list(torch.split(gamma, self.config.channels, dim=1)),
            list(torch.split(beta, self.config.channels, dim=1)),
        )

    def forward(self, stats: Tensor) -> LayerParams:
        return self.decode(self.embed(stats))

    def fits(self, net: nn.Module) -> bool:
        """Whether this predictor's outputs fit ``net``'s norms."""
        return tuple(n.channels for n in net.norms()) == tuple(self.config.channels)


def bank_rows(net: nn.Module) -> Tensor:
    """``[K, 2 * sum(channels)]``: a network's K trained rows in ``StylePredictor.vector``'s
    layout."""
    norms = net.norms()
    gamma = torch.cat([n.gamma.detach().float() for n in norms], dim=1)
    beta = torch.cat([n.beta.detach().float() for n in norms], dim=1)
    return torch.cat([gamma, beta], dim=1)


def rows_of(params: LayerParams) -> list[tuple[Tensor, Tensor]]:
    """Per layer ``(gamma [K, C], beta [K, C])``: the ``extra`` rows of a ``RowMix``."""
    return [(g.detach(), b.detach()) for g, b in zip(params.gammas, params.betas, strict=True)]
