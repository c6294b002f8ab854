"""Kahu: an open platform for imaging AI on a hospital's own data.

The public API is deliberately small; see ``__all__``. The names are imported on first use,
so that a task process importing one operator module does not load the web application.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("kahu")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from kahu.app import create_app
    from kahu.core import Kahu
    from kahu.settings import Settings

__all__ = ["Kahu", "Settings", "__version__", "create_app"]

_WHERE = {"Kahu": "kahu.core", "Settings": "kahu.settings", "create_app": "kahu.app"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'kahu' has no attribute {name!r}")
