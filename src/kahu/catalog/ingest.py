"""The one ingest path: validate, store durably, index, emit events.

DIMSE C-STORE, STOW-RS, upload, ``kahu import`` and workflow results all call
:meth:`Ingestor.ingest`; there is no other way into the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from kahu.catalog.records import IngestResult, InstanceFacts
from kahu.catalog.repository import DEFAULT_PROJECT, Catalog, NewInstance, StoredOutcome
from kahu.dicom import values
from kahu.dicom.metadata import flatten
from kahu.dicom.part10 import file_meta_header
from kahu.dicom.structure import ElementIndex, check_complete, read_meta
from kahu.dicom.uids import validate_uid
from kahu.errors import InvalidDicom, InvalidInput
from kahu.events import EventBus, InstanceStored
from kahu.storage.base import BlobStore, Staged

log = logging.getLogger(__name__)


def _text(ds: Any, keyword: str, limit: int = 324) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text[:limit] or None


def _number(ds: Any, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return values.parse_is(str(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        return None


def _date(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    try:
        return values.parse_da(str(value)) if value else None
    except ValueError:
        return None


def _time(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    try:
        return values.parse_tm(str(value)) if value else None
    except ValueError:
        return None


def as_part10(data: bytes) -> bytes:
    """Return ``data`` as a Part 10 file.

    A bare data set (no preamble, no file meta; common in older archives) gets a generated
    file meta header in front of its bytes, which are kept as they are.
    """
    if not data:
        raise InvalidDicom("empty file")
    if len(data) >= 132 and data[128:132] == b"DICM":
        return data
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
        implicit, little = ds.original_encoding
    except Exception as exc:
        raise InvalidDicom("not a DICOM file") from exc
    if not sop_class or not sop_instance or implicit is None or not little:
        raise InvalidDicom("not a DICOM file (no Part 10 header and no SOP identification)")
    header = file_meta_header(
        validate_uid(str(sop_class), "SOPClassUID"),
        validate_uid(str(sop_instance), "SOPInstanceUID"),
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian,
    )
    return header + data


#: Top-level attributes the catalog reads from every instance (the rest waits for pydicom).
FACT_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPInstanceUID",
    "SOPClassUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SeriesDate",
    "InstanceNumber",
    "NumberOfFrames",
    "Rows",
    "Columns",
)
_FACT_TAGS = [int(tag_for_keyword(k) or 0) for k in FACT_KEYWORDS]


_BINARY = {"US": "H", "UL": "L", "SS": "h", "SL": "l"}
_VRS = {tag: dictionary_VR(tag) for tag in _FACT_TAGS}


class _Facts:
    """The catalog's attributes of one instance, decoded from their raw bytes.

    Plain ASCII values (nearly all of them) are decoded directly; text in another character
    set goes through pydicom with the instance's SpecificCharacterSet.
    """

    def __init__(self, data: bytes, found: tuple[ElementIndex, bool, bool]) -> None:
        self.data = data
        self.index, self.explicit, self.little = found
        self._charset: Dataset | None = None

    def _pydicom(self, keyword: str) -> Any:
        if self._charset is None:
            self._charset = Dataset()
            for tag in _FACT_TAGS:
                entry = self.index.get(tag)
                if entry is not None:
                    vr, offset, length = entry
                    self._charset[tag] = RawDataElement(
                        Tag(tag),
                        vr.decode("ascii") if vr else None,
                        length,
                        self.data[offset : offset + length],
                        offset,
                        not self.explicit,
                        self.little,
                    )
        return self._charset.get(keyword)

    def get(self, keyword: str) -> Any:
        tag = int(tag_for_keyword(keyword) or 0)
        entry = self.index.get(tag)
        if entry is None:
            return None
        vr_bytes, offset, length = entry
        vr = vr_bytes.decode("ascii") if vr_bytes else _VRS[tag]
        raw = self.data[offset : offset + length]
        if vr in _BINARY:
            size = struct.calcsize("<" + _BINARY[vr])
            if length < size:
                return None
            return struct.unpack_from(("<" if self.little else ">") + _BINARY[vr], raw)[0]
        if b"\x1b" in raw:  # ISO 2022 escape sequences are 7-bit, but not ASCII text
            return self._pydicom(keyword)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._pydicom(keyword)
        return text.strip(" \0")


def _facts_source(data: bytes, transfer_syntax: str, body: int) -> Any:
    """Something with ``get(keyword)`` for the catalog's attributes.

    The completeness walk has found every top-level element already, so the full parse of a
    rich header (hundreds of elements) is left for the few places that need it.
    """
    found = check_complete(data, body, transfer_syntax)
    if found is None:  # deflated: pydicom inflates and parses it all
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return _Facts(data, found)


def read_instance(data: bytes) -> tuple[InstanceFacts, Callable[[], Dataset]]:
    """Validate a Part 10 file and read what the catalog keeps of it.

    Returns the facts and a function that parses the whole header (without pixel data) with
    pydicom, for the places that need every attribute. Raises :class:`InvalidDicom` or
    ``InvalidUID``.
    """
    if not data:
        raise InvalidDicom("empty file")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidDicom("not a DICOM Part 10 file (no 'DICM' marker after the preamble)")
    body, meta = read_meta(data)
    transfer_syntax = meta.get(0x00020010, b"").decode("ascii", "replace").strip("\0 ")
    if not transfer_syntax:
        raise InvalidDicom("file meta information has no TransferSyntaxUID")
    validate_uid(transfer_syntax, "TransferSyntaxUID")
    try:
        ds = _facts_source(data, transfer_syntax, body)
        uids: dict[str, str] = {}
        for keyword in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID"):
            value = ds.get(keyword)
            if value is None or str(value) == "":
                raise InvalidDicom(f"missing {keyword}")
            uids[keyword] = validate_uid(str(value), keyword)
        facts = InstanceFacts(
            sop_instance_uid=uids["SOPInstanceUID"],
            sop_class_uid=uids["SOPClassUID"],
            series_instance_uid=uids["SeriesInstanceUID"],
            study_instance_uid=uids["StudyInstanceUID"],
            transfer_syntax_uid=transfer_syntax,
            patient_id=_text(ds, "PatientID", 64) or "",
            issuer_of_patient_id=_text(ds, "IssuerOfPatientID", 64) or "",
            patient_name=_text(ds, "PatientName"),
            patient_birth_date=_date(ds, "PatientBirthDate"),
            patient_sex=_text(ds, "PatientSex", 16),
            study_date=_date(ds, "StudyDate"),
            study_time=_time(ds, "StudyTime"),
            accession_number=_text(ds, "AccessionNumber", 64),
            study_id=_text(ds, "StudyID", 16),
            study_description=_text(ds, "StudyDescription", 256),
            referring_physician_name=_text(ds, "ReferringPhysicianName"),
            modality=_text(ds, "Modality", 16),
            series_number=_number(ds, "SeriesNumber"),
            series_description=_text(ds, "SeriesDescription", 256),
            body_part_examined=_text(ds, "BodyPartExamined", 64),
            series_date=_date(ds, "SeriesDate"),
            instance_number=_number(ds, "InstanceNumber"),
            number_of_frames=_number(ds, "NumberOfFrames"),
            rows=_number(ds, "Rows"),
            columns=_number(ds, "Columns"),
        )
    except InvalidInput:
        raise
    except Exception as exc:  # pydicom raises many kinds on garbage
        raise InvalidDicom(f"unreadable DICOM: {exc}") from exc

    def header() -> Dataset:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)

    return facts, header


def document_of(facts: InstanceFacts, header: Callable[[], Dataset]) -> dict[str, Any]:
    """The series document from a first instance; a header pydicom cannot parse is flagged."""
    try:
        return flatten(header(), facts.transfer_syntax_uid)
    except Exception as exc:
        log.warning("metadata of %s not extracted: %s", facts.sop_instance_uid, exc)
        return {"Modality": facts.modality, "_invalid": {"_header": str(exc)[:200]}}


def blob_key(facts: InstanceFacts) -> str:
    """Only validated UIDs reach this path."""
    return f"{facts.study_instance_uid}/{facts.series_instance_uid}/{facts.sop_instance_uid}.dcm"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _origin(source: str | None) -> str:
    """How a dataset named at ingest came to be: 'ae' (called AE title), 'upload', 'import'."""
    if not source or source.startswith("dimse"):
        return "ae"
    return source.split(":")[0][:16]


@dataclass(frozen=True, slots=True)
class _Candidate:
    data: bytes
    header: Callable[[], Dataset]
    facts: InstanceFacts
    digest: Future[str]  # see Ingestor._digest
    key: str


class Ingestor:
    """Validate, store durably, index and announce instances (thread-safe).

    Each file's durable write (temporary file + fsync) starts on a staging thread as soon as
    the bytes are in Part 10 form, so the disk works while this thread parses, hashes and
    prepares the catalog transaction. The file is renamed into place inside that transaction,
    only for instances the catalog does not hold yet, and the transaction commits after the
    rename is durable: success is never reported before both file and rows are on disk.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: BlobStore,
        events: EventBus | None = None,
        *,
        staging_threads: int = 8,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.events = events or EventBus()
        self._staging = ThreadPoolExecutor(staging_threads, thread_name_prefix="kahu-staging")

    def close(self) -> None:
        self._staging.shutdown(wait=True)

    def ingest(
        self,
        data: bytes,
        *,
        dataset: str | None = None,
        source: str | None = None,
        expect_study: str | None = None,
        project: str | None = None,
    ) -> IngestResult:
        """Store one Part 10 file. Bad input is reported as ``rejected``; storage errors raise.

        ``expect_study`` refuses an instance of another study (STOW-RS to /studies/{uid}).
        """
        return self.ingest_many(
            [data], dataset=dataset, source=source, expect_study=expect_study, project=project
        )[0]

    def ingest_many(
        self,
        items: Sequence[bytes],
        *,
        dataset: str | None = None,
        source: str | None = None,
        expect_study: str | None = None,
        project: str | None = None,
    ) -> list[IngestResult]:
        """Store several files with one group commit: each file is fsync'ed, each folder once,
        and one catalog transaction records them all. Results come in the order given. The
        series join ``project`` (the default project when None); a project that does not
        exist raises NotFound before anything is stored."""
        self.catalog.project_pk(project or DEFAULT_PROJECT)
        results: list[IngestResult | None] = [None] * len(items)
        writes: dict[int, Future[Staged]] = {}
        parts: list[tuple[int, bytes, Future[str]]] = []
        for index, data in enumerate(items):
            try:
                data = as_part10(data)
            except InvalidInput as exc:
                results[index] = IngestResult("rejected", reason=str(exc), source=source)
                continue
            writes[index] = self._staging.submit(self.store.stage, data)
            parts.append((index, data, self._digest(data, alone=len(items) == 1)))
        published: set[int] = set()
        try:
            accepted: list[tuple[int, _Candidate]] = []
            batch: set[str] = set()
            for index, data, digest in parts:
                prepared = self._prepare(data, digest, source, expect_study)
                if isinstance(prepared, IngestResult):
                    results[index] = prepared
                elif prepared.facts.sop_instance_uid in batch:
                    results[index] = self._result("duplicate", prepared.facts, source)
                else:
                    batch.add(prepared.facts.sop_instance_uid)
                    accepted.append((index, prepared))
            if accepted:
                self._record(accepted, writes, published, dataset, source, results, project)
        finally:
            for index, write in writes.items():
                if index not in published:
                    self._drop(write)
        return [r for r in results if r is not None]

    def _digest(self, data: bytes, *, alone: bool) -> Future[str]:
        """The SHA-256 of one file: a batch's are computed side by side on staging threads; a
        single file's here, where hashing (GIL released) lets its staging write start at once
        instead of waiting for this thread to give up the GIL."""
        if not alone:
            return self._staging.submit(_sha256, data)
        digest: Future[str] = Future()
        digest.set_result(_sha256(data))
        return digest

    def _prepare(
        self, data: bytes, digest: Future[str], source: str | None, expect_study: str | None
    ) -> IngestResult | _Candidate:
        try:
            facts, header = read_instance(data)
        except InvalidInput as exc:
            return IngestResult("rejected", reason=str(exc), source=source)
        if expect_study is not None and facts.study_instance_uid != expect_study:
            return self._result(
                "rejected",
                facts,
                source,
                f"instance belongs to study {facts.study_instance_uid}, not {expect_study}",
            )
        return _Candidate(data, header, facts, digest, blob_key(facts))

    def _record(
        self,
        accepted: list[tuple[int, _Candidate]],
        writes: dict[int, Future[Staged]],
        published: set[int],
        dataset: str | None,
        source: str | None,
        results: list[IngestResult | None],
        project: str | None,
    ) -> None:
        """One catalog transaction; the new files are published inside it, before commit."""
        placed: list[str] = []

        def publish(outcomes: list[StoredOutcome]) -> None:
            if published:  # a retried transaction: the files are in place already
                return
            fresh = [(i, c) for (i, c), o in zip(accepted, outcomes, strict=True) if o.inserted]
            staged = [(writes[i].result(), c.key) for i, c in fresh]  # raises if a write failed
            published.update(i for i, _ in fresh)
            self.store.publish(staged)
            placed.extend(c.key for _, c in fresh)

        try:
            outcomes = self.catalog.add_instances(
                [
                    NewInstance(
                        c.facts,
                        c.key,
                        len(c.data),
                        c.digest.result(),
                        partial(document_of, c.facts, c.header),
                    )
                    for _, c in accepted
                ],
                dataset=dataset,
                origin=_origin(source),
                project=project,
                before_commit=publish,
            )
        except BaseException:
            for key in placed:  # the rows were rolled back: their files go too
                self._discard(key)
            raise
        for (index, c), outcome in zip(accepted, outcomes, strict=True):
            if not outcome.inserted:
                assert outcome.existing_sha256 is not None
                results[index] = self._duplicate(
                    c.facts,
                    outcome.existing_sha256,
                    outcome.stored_series_uid,
                    c.digest.result(),
                    dataset,
                    source,
                    project,
                )
                continue
            self.events.publish(
                InstanceStored(
                    c.facts.sop_instance_uid,
                    c.facts.series_instance_uid,
                    c.facts.study_instance_uid,
                    dataset,
                    outcome.new_series,
                )
            )
            results[index] = self._result("stored", c.facts, source)

    def _drop(self, write: Future[Staged]) -> None:
        """Forget a staged write that will not be published (rejected, duplicate, failed)."""
        if write.cancel():
            return
        try:
            self.store.discard(write.result())
        except Exception:
            log.debug("a staged write that failed needs no cleanup", exc_info=True)

    def _duplicate(
        self,
        facts: InstanceFacts,
        stored_sha: str,
        stored_series: str | None,
        digest: str,
        dataset: str | None,
        source: str | None,
        project: str | None,
    ) -> IngestResult:
        if stored_series != facts.series_instance_uid:
            return self._result(
                "rejected",
                facts,
                source,
                f"SOPInstanceUID already stored in series {stored_series}; kept the stored one",
            )
        # The same instance again, perhaps in another transfer syntax: the first copy stays.
        reason = None if stored_sha == digest else "different encoding; kept the stored copy"
        if dataset:
            self.catalog.add_to_dataset(
                dataset, facts.series_instance_uid, origin=_origin(source), project=project
            )
        self.catalog.add_to_project(project or DEFAULT_PROJECT, facts.series_instance_uid)
        return self._result("duplicate", facts, source, reason)

    def _discard(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception:
            log.exception("could not remove %s after a failed catalog write", key)

    @staticmethod
    def _result(
        status: Any, facts: InstanceFacts, source: str | None, reason: str | None = None
    ) -> IngestResult:
        return IngestResult(
            status,
            facts.sop_instance_uid,
            facts.series_instance_uid,
            facts.study_instance_uid,
            facts.sop_class_uid,
            reason,
            source,
        )

    def delete_series(self, series_uid: str) -> int:
        """Delete a series' rows, then its files; return how many files were removed."""
        keys = self.catalog.delete_series(validate_uid(series_uid, "SeriesInstanceUID"))
        removed = 0
        for key in keys:
            try:
                removed += self.store.delete(key)
            except Exception:
                log.exception("could not remove %s of deleted series %s", key, series_uid)
        with contextlib.suppress(Exception):  # made by the series-thumbnails workflow
            self.store.delete(f"thumbnails/{series_uid}.png")
        return removed
