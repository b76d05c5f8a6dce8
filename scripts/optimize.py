"""Per-image style transfer by optimization, Gatys et al. (stylenet-optimize). See --help."""

from stylenet.cli.optimize import entry

entry()
