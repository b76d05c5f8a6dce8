"""Speed benchmarks and the one-command GPU suite (stylenet-bench). See --help."""

from stylenet.cli.bench import entry

entry()
