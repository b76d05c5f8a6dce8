"""stylenet: trainable feed-forward neural style transfer with conditional instance norm.

Where things live: ``model`` (the network), ``losses`` (VGG16 perceptual loss), ``data`` (content
images), ``system`` (the LightningModule), ``train`` (training entry), ``checkpoint`` (inference
checkpoints), ``inference`` (the ``Stylizer``), ``optimize`` (Gatys et al.'s method).
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202  (lazy: `python -m stylenet.weights` stays light)
    if name == "TransformerNet":
        from stylenet.model import TransformerNet

        return TransformerNet
    if name == "load_network":
        from stylenet.checkpoint import load_network

        return load_network
    if name == "Stylizer":
        from stylenet.inference import Stylizer

        return Stylizer
    raise AttributeError(name)
