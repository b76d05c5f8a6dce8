"""Where the package's own files are: shipped paintings, sample photos and the Hydra configs.

The configs are the top-level ``configs/`` folder of the source tree, installed as the package
``stylenet.configs`` (``pyproject.toml`` maps one onto the other), so the same files serve an
editable install, a wheel and a source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

# stylenet/ (this file is stylenet/io/paths.py)
PACKAGE_DIR = Path(__file__).resolve().parent.parent
ASSETS_DIR = PACKAGE_DIR / "assets"
STYLE_DIR = ASSETS_DIR / "styles"
SAMPLE_CONTENT_DIR = ASSETS_DIR / "content"


def config_dir() -> Path:
    """The installed ``stylenet.configs`` package, or, in a source tree used without installing
    (``PYTHONPATH=.``, as on a machine that cannot install), the ``configs/`` beside the package."""
    try:
        import stylenet.configs

        return Path(stylenet.configs.__file__).resolve().parent
    except ImportError:
        return PACKAGE_DIR.parent / "configs"


def cache_dir() -> Path:
    """``$STYLENET_CACHE``, else ``$XDG_CACHE_HOME/stylenet``, else ``~/.cache/stylenet``."""
    env = os.environ.get("STYLENET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stylenet"
