"""``python -m stylenet.bank``: the same as ``stylenet-bank`` (kept as the documented spelling;
the bank code is ``stylenet.checkpoints.bank``)."""

if __name__ == "__main__":
    from stylenet.cli.bank import entry

    entry()
