"""The web page and HTTP API: ``python -m stylenet.serve --checkpoint checkpoints/bank_all.pt``.

``app`` (FastAPI: routes, validation, errors), ``engine`` (the model, the bounded queue, batching
on the device), ``static/`` (the page: plain HTML, CSS and JavaScript, no build step). Needs the
``serve`` extra: ``pip install "stylenet[serve]"``.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.checkpoints``, ``stylenet.inference``, ``stylenet.cli``.
"""
