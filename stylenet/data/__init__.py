"""What training reads.

- ``photos``: content photos (a folder or a COCO annotation file), scanned up front with bad
  files skipped and counted, as a Lightning ``DataModule``;
- ``styles``: style paintings named by the ``style`` config group (one YAML per style).

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``.
"""
