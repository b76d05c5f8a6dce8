"""``python -m stylenet.serve``: the same as ``stylenet-serve``."""

from stylenet.cli.serve import entry

entry()
