"""Applying a trained network: one forward pass per image.

- ``stylizer``: ``Stylizer`` (load once, stylize images or tensors; mixes, masks, strength,
  colour preservation, stroke scale) and ``finish``, the post-processing every caller shares;
- ``tiling``, ``memory``: images too large for one pass (memory estimate, tiles, blending);
- ``compile``: shape-specialised ``torch.compile`` for repeated shapes;
- ``temporal``: temporal smoothing of video frames;
- ``media``: stylizing files, folders and videos with a ``Stylizer``;
- ``predicted``: image files as styles, through a checkpoint's style predictor (the frozen VGG16
  of the loss turns a painting into the statistics the predictor reads).

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.checkpoints``.
"""
