"""The VGG16 layout and the layer sets the losses use: the single source for every module.

torchvision's ``vgg16().features`` is five blocks of 3x3 convolutions (2, 2, 3, 3, 3 of them;
64, 128, 256, 512, 512 channels), each conv followed by a ReLU and each block by a 2x2 max pool
(Simonyan & Zisserman 2015, Table 1, configuration D). Everything below is derived from that.
"""

from __future__ import annotations

from dataclasses import dataclass

# Configuration D of Simonyan & Zisserman (2015): convs per block and their width.
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_BLOCK_CHANNELS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class VGGLayer:
    name: str  # "relu3_3"
    index: int  # position of the ReLU in torchvision's ``features``
    conv_index: int  # position of the conv before it
    channels: int
    stride: int  # downsampling relative to the input (1, 2, 4, 8, 16)


def _layout() -> dict[str, VGGLayer]:
    out: dict[str, VGGLayer] = {}
    i = 0
    for b, (n, ch) in enumerate(zip(VGG16_BLOCKS, VGG16_BLOCK_CHANNELS, strict=True), start=1):
        for k in range(1, n + 1):
            out[f"relu{b}_{k}"] = VGGLayer(f"relu{b}_{k}", i + 1, i, ch, 2 ** (b - 1))
            i += 2  # conv, relu
        i += 1  # max pool
    return out


LAYERS: dict[str, VGGLayer] = _layout()
# ReLU name -> index in ``vgg16().features``.
VGG16_LAYERS: dict[str, int] = {n: layer.index for n, layer in LAYERS.items()}
# Index of each of the 13 convolutions, and its output channels.
VGG16_CONV_INDICES: tuple[int, ...] = tuple(layer.conv_index for layer in LAYERS.values())
VGG16_CONV_CHANNELS: tuple[int, ...] = tuple(layer.channels for layer in LAYERS.values())
# VGG19 names (Gatys et al. use VGG19) that VGG16 lacks: VGG19 has a 4th conv in blocks 3-5.
VGG19_ONLY = ("relu3_4", "relu4_4", "relu5_4")

# ImageNet statistics torchvision's VGG16 was trained with; applied inside the feature extractor
# so callers always pass images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Feed-forward training and the evaluation loss: content at relu2_2, style at relu1_2, relu2_2,
# relu3_3, relu4_3 with equal layer weights (Johnson et al. 2016, Sec. 4.1).
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu2_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

# Per-image optimization: content at conv4_2, style at conv1_1 .. conv5_1 (Gatys et al. 2016,
# Sec. 3).
GATYS_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
GATYS_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def default_layer_weights() -> dict[str, float]:
    """``{layer: 1.0}`` for the default style layers (a fresh dict each call)."""
    return {n: 1.0 for n in DEFAULT_STYLE_LAYERS}
