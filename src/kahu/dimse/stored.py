"""C-STORE sub-operations (C-GET, C-MOVE) that send stored files byte for byte.

pynetdicom's retrieve services take a pydicom ``Dataset`` for each sub-operation and encode it
again, which drops group lengths and re-deflates deflated files: the peer would receive other
bytes than were stored. Kahu hands them a stand-in that names the stored file instead, and
:func:`send_stored_files` makes ``Association.send_c_store`` send that file as it is (pynetdicom
streams a file given by path without decoding it). Where the peer accepted no presentation
context in the stored transfer syntax, the file is parsed and pynetdicom converts it as before.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom.association import Association

log = logging.getLogger(__name__)

_PATH = "kahu_stored_path"


def stored_file(path: Path, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """A stand-in data set for the file at ``path`` (parsed only if it must be converted)."""
    stand_in = Dataset()
    stand_in.SOPClassUID = sop_class_uid
    stand_in.SOPInstanceUID = sop_instance_uid
    object.__setattr__(stand_in, _PATH, path)
    return stand_in


def send_stored_files() -> None:
    """Teach ``Association.send_c_store`` about stand-ins (idempotent, process-wide)."""
    original = Association.send_c_store
    if getattr(original, "_kahu", False):
        return

    @functools.wraps(original)
    def send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
        path = getattr(dataset, _PATH, None) if isinstance(dataset, Dataset) else None
        if path is None:
            return original(self, dataset, *args, **kwargs)
        try:
            return original(self, path, *args, **kwargs)
        except ValueError as exc:  # no presentation context in the stored transfer syntax
            log.info("converting %s for the peer: %s", path.name, exc)
            return original(self, pydicom.dcmread(path), *args, **kwargs)

    send_c_store._kahu = True  # type: ignore[attr-defined]
    Association.send_c_store = send_c_store  # type: ignore[method-assign]
