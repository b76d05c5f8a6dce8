"""Speed benchmarks: inference and training throughput, ours against a naive baseline and a peer.

A benchmark, not a test: it prints figures and writes them to ``bench/results/<run>.json``;
``BENCHMARKS.md`` is regenerated from those files (``stylenet-bench --report``). Modules:
``baseline`` (the naive network), ``timing`` (timers), ``inference`` and
``training`` (the two benchmarks), ``suite`` (the one-command GPU run), ``report`` (markdown).

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.data``, ``stylenet.checkpoints``, ``stylenet.inference``,
``stylenet.optimization``, ``stylenet.training``, ``stylenet.evaluation``, ``stylenet.serve``.
"""
