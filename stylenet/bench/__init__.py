"""Speed benchmarks: inference and training throughput, ours against a naive baseline and a peer.

A benchmark, not a test: it prints figures and writes them to ``bench/results/<run>.json``;
``BENCHMARKS.md`` is regenerated from those files (``stylenet-bench --report``). Modules:
``baseline`` (the naive network), ``timing`` (timers, environment), ``inference`` and
``training`` (the two benchmarks), ``suite`` (the one-command GPU run), ``report`` (markdown).
"""
