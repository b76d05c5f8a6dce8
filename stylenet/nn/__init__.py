"""The networks: everything with weights that a style lives in.

- ``network``: ``TransformerNet`` (Johnson et al. 2016 with conditional instance norm), its
  model arguments (``ModelConfig``) and the state-dict keys that hold one row per style;
- ``norm``: the conditional instance norm, which takes its gamma/beta from a ``StyleParams``;
- ``params``: ``StyleParams``, the one seam for style parameters: built from bank rows, a mix or
  a mask of them, or given per layer (what a network that predicts style parameters returns);
- ``mix``: how a user names a style or a mix of styles (``"a=0.7,b=0.3"``);
- ``vgg``: the VGG16 layout and the layer sets the losses use.

A new network goes here (and ``model=<name>`` in ``configs/model/``); a network that predicts
style parameters returns a ``StyleParams``. May import: ``stylenet.errors``, ``stylenet.io``.
"""
