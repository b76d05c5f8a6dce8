"""stylenet: trainable feed-forward neural style transfer with conditional instance norm.

    from stylenet import load_network, Stylizer, TransformerNet

The package is one level of subpackages by concern; each one's docstring says what it holds and
what it may import (``tests/test_app.py`` checks the imports against it). From the bottom up:
``errors`` (the one error base class), ``io`` (images, files, video), ``runtime`` (devices,
signals, Hydra resolvers), ``nn`` (the networks and the style-parameter seam), ``losses`` (VGG16
perceptual loss), ``data`` (photos and paintings for training), ``checkpoints`` (the file
format, exports, bank tools), ``inference`` (the ``Stylizer``, tiling, video), ``optimization``
(Gatys et al.'s method), ``training`` (the LightningModule and the runs), ``evaluation``
(quality reports), ``serve`` (web page and HTTP API), ``bench`` (speed benchmarks) and ``cli``
(one module per command). ``weights`` and ``bank`` are only the ``python -m stylenet.weights`` and
``python -m stylenet.bank`` spellings of two commands.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202  (lazy: `python -m stylenet.weights` stays light)
    if name == "TransformerNet":
        from stylenet.nn.network import TransformerNet

        return TransformerNet
    if name == "load_network":
        from stylenet.checkpoints.format import load_network

        return load_network
    if name == "Stylizer":
        from stylenet.inference.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)
