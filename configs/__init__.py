"""stylenet's Hydra configs, installed as the package ``stylenet.configs``.

Read and copy the YAML files beside this one; add your own styles, banks and experiments in a
folder of your own and pass it with ``--config-dir`` (see README: "Your own configs").
"""
