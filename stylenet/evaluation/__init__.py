"""Quality of trained networks on held-out photos, with one fixed evaluation loss.

- ``loss``: the fixed evaluation loss and its terms;
- ``measures``: SSIM of the luma, spectral checkerboard score;
- ``harness``: ``evaluate_checkpoint`` (photos, cached optimization references, per-style rows);
- ``flicker``: temporal flicker of stylized video;
- ``report``: report.json, report.md and the contact sheet;
- ``arbitrary``: style images as styles (a checkpoint's predictor) against trained and grown
  rows and the peer, by our loss and by the peer's own measure.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.data``, ``stylenet.checkpoints``, ``stylenet.inference``,
``stylenet.optimization``, ``stylenet.training`` (rows grown as a user grows them).
"""
