"""Stylize images, folders and videos (stylenet-stylize). See --help."""

from stylenet.cli.stylize import entry

entry()
