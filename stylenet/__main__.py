"""``python -m stylenet <command> ...``: the same as the ``stylenet`` command."""

from stylenet.cli import entry

entry()
