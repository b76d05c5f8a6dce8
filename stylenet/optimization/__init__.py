"""The per-image optimization method of Gatys et al. (2016), the quality reference.

- ``gatys``: ``optimize_image`` (L-BFGS or Adam on the pixels, coarse-to-fine);
- ``run``: one run from a Hydra config (``stylenet-optimize``) and the sweep's contact sheet.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.data``.
"""
