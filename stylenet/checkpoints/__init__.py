"""Trained networks on disk.

- ``format``: the self-describing inference checkpoint (``weights_only=True``; model arguments,
  style names, thumbnails, history) and ``load_network``;
- ``export``: ONNX, TorchScript and safetensors exports, each checked against PyTorch;
- ``bank``: list, rename, remove, reorder and merge the styles of a bank.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.nn``, ``stylenet.data``.
"""
