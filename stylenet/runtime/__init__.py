"""Where and how work runs: devices and precisions, Ctrl-C/SIGTERM, the Hydra resolvers and the
record of the machine a figure was measured on.

- ``device``: the one place that decides CUDA or CPU, the precision, and free memory;
- ``signals``: Ctrl-C and SIGTERM as one request to stop, honoured at safe points;
- ``hydra``: the config folder and the OmegaConf resolvers (registered on import);
- ``machine``: the machine, software and command recorded with every results file.

May import: ``stylenet.errors``, ``stylenet.io``.
"""
