"""Where instance files live: the :class:`BlobStore` interface and its implementations."""

from kahu.storage.base import BlobStore, Staged, validate_key
from kahu.storage.filesystem import FilesystemBlobStore

__all__ = ["BlobStore", "FilesystemBlobStore", "Staged", "validate_key"]
