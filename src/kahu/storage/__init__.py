"""Where instance files live: the :class:`BlobStore` interface and its implementations."""

from kahu.storage.base import BlobStore, validate_key
from kahu.storage.filesystem import FilesystemBlobStore

__all__ = ["BlobStore", "FilesystemBlobStore", "validate_key"]
