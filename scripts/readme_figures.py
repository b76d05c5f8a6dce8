"""Regenerate the README figures from the shipped checkpoints. See --help."""

from stylenet.figures import main

raise SystemExit(main())
