"""Training a network: the Lightning system and the runs built from a composed config.

- ``module``: ``StyleTransferModule`` (the LightningModule: network, loss, optimizer);
- ``callbacks``: sample grids, interrupt checkpoints, progress, atomic checkpoint files;
- ``run``: ``train(cfg)``, one training run from start to export, the same steps for every plan;
- ``plans``: what a run trains (``fresh``: a new network; ``grow``: new rows of a bank), chosen
  by the ``plan`` config group; a new kind of training is one more plan;
- ``build``: the objects a run needs, built from the config;
- ``resume``, ``outputs``: resuming a run, and where its export may go (never over a file it
  did not write);
- ``grow``: growing a bank (new styles as new gamma/beta rows of an exported checkpoint);
- ``config``: the check of a composed training config before anything starts.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.data``, ``stylenet.checkpoints``.
"""
