"""Quality report of a checkpoint on held-out photos (stylenet-evaluate). See --help."""

from stylenet.cli.evaluate import entry

entry()
