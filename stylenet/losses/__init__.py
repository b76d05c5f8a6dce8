"""Training objectives on frozen VGG16 features.

- ``perceptual``: ``VGGFeatures`` (the frozen loss network) and ``PerceptualLoss`` (content, Gram
  style, total variation), one implementation for training, optimization and evaluation;
- ``weights``: finding or fetching the ImageNet VGG16 weights (``stylenet-weights``).

A new loss goes here. May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.nn``.
"""
