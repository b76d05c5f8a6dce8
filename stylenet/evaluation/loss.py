"""The fixed evaluation loss every figure uses, independent of how a model was trained (see
``stylenet.evaluation.harness`` for its definition and sources)."""

from __future__ import annotations

import torch
from torch import Tensor

from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
from stylenet.nn.vgg import DEFAULT_CONTENT_LAYERS, default_layer_weights

EVAL_CONTENT_LAYERS = DEFAULT_CONTENT_LAYERS


EVAL_STYLE_LAYERS = default_layer_weights()


EVAL_CONTENT_WEIGHT = 1e5


EVAL_STYLE_WEIGHT = 1e10


def build_eval_loss(
    vgg_weights: str = "imagenet", vgg_weights_path: str | None = None
) -> PerceptualLoss:
    vgg = VGGFeatures(
        list(EVAL_CONTENT_LAYERS) + list(EVAL_STYLE_LAYERS), vgg_weights, vgg_weights_path
    )
    return PerceptualLoss(
        vgg, EVAL_CONTENT_LAYERS, EVAL_STYLE_LAYERS, EVAL_CONTENT_WEIGHT, EVAL_STYLE_WEIGHT, 0.0
    )


@torch.no_grad()
def eval_terms(
    loss: PerceptualLoss, output: Tensor, photo: Tensor, style_grams: dict[str, Tensor]
) -> dict[str, float]:
    terms = loss.combine(loss.vgg(output), loss.vgg(photo), style_grams, output)
    return {k: float(v) for k, v in terms.items() if k != "tv_loss"}
