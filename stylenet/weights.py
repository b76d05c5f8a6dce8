"""``python -m stylenet.weights``: the same as ``stylenet-weights`` (kept as the documented
spelling; the weights code is ``stylenet.losses.weights``)."""

if __name__ == "__main__":
    from stylenet.cli.weights import main

    main()
