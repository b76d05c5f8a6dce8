"""The server's settings and their defaults (no web framework imported here, so the command's
``--help`` works without the ``serve`` extra)."""

from __future__ import annotations

from dataclasses import dataclass

from stylenet.inference.stylizer import DEFAULT_MAX_SIZE

# 25 MB uploads: 40 MP (the pixel limit below) at 5 bits per pixel, a high-quality JPEG's rate.
DEFAULT_MAX_UPLOAD = 25 * 2**20
# 40 MP decoded (120 MB as RGB): anything above is refused before decoding (decompression bombs
# declare huge sizes in a few bytes).
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass
class ServeConfig:
    checkpoint: str
    device: str = "auto"
    precision: str = "auto"
    compile: str = "auto"
    max_upload: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = DEFAULT_MAX_PIXELS
    # The largest output side a request may ask for (2048: 4 MP, a few seconds on a CPU).
    max_size: int = 2048
    default_size: int = DEFAULT_MAX_SIZE
    # Waiting requests at most: with batches of 8 on a GPU that is 4 batches of backlog; beyond
    # it a client is better told 503 + Retry-After than kept waiting towards a timeout.
    max_queue: int = 32
    max_batch: int = 8
    timeout_s: float = 60.0
    memory_budget: int | None = None
