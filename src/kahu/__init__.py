"""Kahu: an open platform for imaging AI on a hospital's own data.

The public API is deliberately small; see ``__all__``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kahu")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from kahu.app import create_app
from kahu.core import Kahu
from kahu.settings import Settings

__all__ = ["Kahu", "Settings", "__version__", "create_app"]
