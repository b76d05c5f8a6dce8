"""Train a style-transfer network: `python scripts/train.py style=starry_night` (stylenet-train)."""

from stylenet.cli.train import entry

entry()
