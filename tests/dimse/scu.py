"""A thin pynetdicom SCU for the tests."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)


def associate(
    port: int, contexts: list[Any], *, called: str = "KAHU", calling: str = "TESTSCU"
) -> Any:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, contexts=contexts, ae_title=called)
    return assoc


def store(
    port: int, files: list[bytes], *, called: str = "KAHU", calling: str = "TESTSCU"
) -> list[int]:
    """Send each Part 10 file's data set exactly as encoded in the file; return the statuses."""
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes, never re-encode them
    datasets = [pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True) for f in files]
    pairs = sorted(
        {
            (str(d.file_meta.MediaStorageSOPClassUID), str(d.file_meta.TransferSyntaxUID))
            for d in datasets
        }
    )
    assoc = associate(
        port, [build_context(s, [t]) for s, t in pairs], called=called, calling=calling
    )
    assert assoc.is_established, "association rejected"
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index, data in enumerate(files):
            path = Path(tmp) / f"{index}.dcm"
            path.write_bytes(data)
            paths.append(path)
        try:
            return [int(assoc.send_c_store(p).Status) for p in paths]
        finally:
            assoc.release()


def echo(port: int) -> int:
    assoc = associate(port, [build_context(Verification)])
    assert assoc.is_established
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def find(
    port: int,
    query: Dataset,
    *,
    patient_root: bool = False,
    calling: str = "TESTSCU",
    called: str = "KAHU",
) -> tuple[list[Dataset], int]:
    model = (
        PatientRootQueryRetrieveInformationModelFind
        if patient_root
        else StudyRootQueryRetrieveInformationModelFind
    )
    assoc = associate(port, [build_context(model)], calling=calling, called=called)
    assert assoc.is_established
    found: list[Dataset] = []
    final = -1
    try:
        for status, identifier in assoc.send_c_find(query, model):
            if status and status.Status in (0xFF00, 0xFF01):
                found.append(identifier)
            elif status:
                final = int(status.Status)
    finally:
        assoc.release()
    return found, final


def move(port: int, query: Dataset, destination: str, *, calling: str = "TESTSCU") -> Dataset:
    model = StudyRootQueryRetrieveInformationModelMove
    assoc = associate(port, [build_context(model)], calling=calling)
    assert assoc.is_established
    last: Dataset | None = None
    try:
        for status, _ in assoc.send_c_move(query, destination, model):
            if status:
                last = status
    finally:
        assoc.release()
    assert last is not None
    return last
