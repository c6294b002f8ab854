"""Event handlers of the DIMSE server, named after the services of PS3.4."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any, cast

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pynetdicom import events
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import build_context

from kahu.audit import AuditLog, AuditUnavailable
from kahu.auth.projects import Projects
from kahu.catalog.dicom_query import DERIVED, UNIQUE_KEYS, DicomQuery, Level
from kahu.catalog.ingest import Ingestor
from kahu.catalog.records import InstanceRow
from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.dicom import sop
from kahu.dicom.part10 import file_meta_header
from kahu.dicom.uids import validate_uid
from kahu.dimse.nodes import NodeRegistry
from kahu.dimse.stored import stored_file
from kahu.errors import InvalidInput, KahuError
from kahu.settings import DicomSettings
from kahu.storage.base import BlobStore

log = logging.getLogger(__name__)

# PS3.4 C.4.1.1.4 / C.4.2.1.4 failure statuses
UNABLE_TO_PROCESS = 0xC001
IDENTIFIER_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
PENDING = 0xFF00


def _log_association(event: events.Event) -> None:
    """One line per association and outcome (pynetdicom's own per-message logging is off)."""
    peer = event.assoc.requestor
    called = getattr(peer.primitive, "called_ae_title", "") or ""
    log.info(
        "association %s: %s at %s:%s, called %s",
        event.event.name.removeprefix("EVT_").lower(),
        peer.ae_title.strip(),
        peer.address,
        peer.port,
        str(called).strip(),
    )


class DimseHandlers:
    """The server's behaviour, bound to pynetdicom events by :mod:`kahu.dimse.server`."""

    def __init__(
        self,
        settings: DicomSettings,
        ingestor: Ingestor,
        catalog: Catalog,
        query: DicomQuery,
        nodes: NodeRegistry,
        store: BlobStore,
        projects: Projects,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.projects = projects
        self.ingestor = ingestor
        self.catalog = catalog
        self.query = query
        self.nodes = nodes
        self.store = store

    def bindings(self) -> list[tuple[Any, Any]]:
        return [
            (events.EVT_C_ECHO, self.handle_echo),
            (events.EVT_C_STORE, self.handle_store),
            (events.EVT_C_FIND, self.handle_find),
            (events.EVT_C_MOVE, self.handle_move),
            (events.EVT_C_GET, self.handle_get),
            (events.EVT_ACCEPTED, _log_association),
            (events.EVT_REJECTED, _log_association),
            (events.EVT_RELEASED, _log_association),
            (events.EVT_ABORTED, _log_association),
        ]

    # -- C-ECHO / C-STORE ---------------------------------------------------------------------

    def handle_echo(self, event: events.Event) -> int:
        return 0x0000

    def _dataset_name(self, called: str) -> str | None:
        """The dataset a called AE title names (our own AE title names none)."""
        if (
            not self.settings.called_aet_is_dataset
            or not called
            or called == self.settings.ae_title
        ):
            return None
        return called

    def store_instance(
        self,
        calling_aet: str,
        called_aet: str,
        sop_class: str,
        sop_instance: str,
        transfer_syntax: str,
        data_set: bytes,
    ) -> tuple[int, str | None]:
        """C-STORE on either receive path: the status and error comment of the response."""
        try:
            # the data set as received, behind a file meta header of our own making
            # (pynetdicom's include_meta=True costs more than the rest of the store)
            data = (
                file_meta_header(
                    validate_uid(sop_class, "AffectedSOPClassUID"),
                    validate_uid(sop_instance, "AffectedSOPInstanceUID"),
                    transfer_syntax,
                    calling_aet,
                )
                + data_set
            )
            result = self.ingestor.ingest(
                data,
                dataset=self._dataset_name(called_aet),
                source=f"dimse:{calling_aet}",
                project=self.projects.project_of_ae(called_aet),
            )
        except InvalidInput as exc:
            log.warning("C-STORE from %s rejected: %s", calling_aet, exc)
            return CANNOT_UNDERSTAND, str(exc)
        except KahuError as exc:
            log.error("C-STORE from %s failed: %s", calling_aet, exc)
            return OUT_OF_RESOURCES, f"storage failed: {exc}"
        except Exception:
            log.exception("C-STORE from %s failed", calling_aet)
            return OUT_OF_RESOURCES, "internal error while storing"
        if result.status == "rejected":
            log.warning("C-STORE from %s rejected: %s", calling_aet, result.reason)
            return CANNOT_UNDERSTAND, result.reason or "rejected"
        return 0x0000, None

    def handle_store(self, event: events.Event) -> Any:
        """C-STORE on pynetdicom's path (associations that also query or retrieve)."""
        request = cast(C_STORE, event.request)
        # the called AE title as the peer sent it (acceptor.ae_title is our own)
        called = getattr(event.assoc.requestor.primitive, "called_ae_title", "") or ""
        status, comment = self.store_instance(
            event.assoc.requestor.ae_title.strip(),
            str(called).strip(),
            str(request.AffectedSOPClassUID or ""),
            str(request.AffectedSOPInstanceUID or ""),
            str(event.context.transfer_syntax),
            event.encoded_dataset(include_meta=False),
        )
        return status if comment is None else _status(status, comment)

    # -- C-FIND -------------------------------------------------------------------------------

    def _level(self, event: events.Event, identifier: Dataset) -> Level:
        raw = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        try:
            level = Level(raw)
        except ValueError as exc:
            raise InvalidInput(f"invalid QueryRetrieveLevel {raw!r}") from exc
        model = event.request.AffectedSOPClassUID
        if model not in sop.PATIENT_ROOT and level is Level.PATIENT:
            raise InvalidInput("Study Root has no PATIENT level")
        return level

    @staticmethod
    def _filters(identifier: Dataset) -> dict[str, str]:
        filters: dict[str, str] = {}
        for elem in identifier:
            if elem.VR == "SQ" or elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                continue
            value = elem.value
            if value is None:
                continue
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
                text = "\\".join(str(v) for v in value)
            else:
                text = str(value)
            filters[elem.keyword] = text
        return filters

    def _scope(self, event: events.Event, destination: str | None = None) -> SeriesScope | None:
        """The series the calling node may query and retrieve: those of its projects (and of
        ``destination``'s, for a C-MOVE), narrowed to the project the called AE title maps
        to, if it maps to one; None for a caller that is no known node."""
        calling = str(event.assoc.requestor.ae_title).strip()
        projects = self.nodes.project_pks(calling)
        if projects is None:
            log.warning("query/retrieve from %r refused: no DICOM node has that AE title", calling)
            return None
        if destination is not None:
            projects &= self.nodes.project_pks(destination) or frozenset()
        called = str(getattr(event.assoc.requestor.primitive, "called_ae_title", "") or "")
        project = self.projects.project_of_ae(called.strip())
        if project is not None:
            projects &= {self.catalog.project_pk(project)}
        return SeriesScope(frozenset(projects), f"node {calling}")

    def _audit(
        self,
        event: events.Event,
        action: str,
        detail: dict[str, Any],
        *,
        series: list[str] | None = None,
        status: int | None = None,
    ) -> int:
        """The audit record of a query or retrieval, before it runs (AuditUnavailable: it
        must not run)."""
        calling = str(event.assoc.requestor.ae_title).strip()
        address = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
        return self.audit.record(
            calling, action, kind="node", path="dimse", client=address,
            series=series or [], detail=detail, status=status,
        )  # fmt: skip

    def handle_find(self, event: events.Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        scope = self._scope(event)
        filters = self._filters(identifier)
        try:
            refused = UNABLE_TO_PROCESS if scope is None else None
            record = self._audit(event, "search", {"c-find": filters}, status=refused)
        except AuditUnavailable as exc:
            yield _status(UNABLE_TO_PROCESS, str(exc)), None
            return
        if scope is None:
            yield _status(UNABLE_TO_PROCESS, "calling AE title is not a known node"), None
            return
        try:
            level = self._level(event, identifier)
            rows = self.query.search(scope, level, filters)
        except InvalidInput as exc:
            self.audit.finish(record, IDENTIFIER_DOES_NOT_MATCH)
            yield _status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except Exception:
            log.exception("C-FIND failed")
            self.audit.finish(record, UNABLE_TO_PROCESS)
            yield UNABLE_TO_PROCESS, None
            return
        self.audit.finish(record, 0, {"matches": len(rows)})
        for row in rows:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield PENDING, _response(identifier, level, row)

    # -- C-MOVE / C-GET -----------------------------------------------------------------------

    def _instances(self, identifier: Dataset, scope: SeriesScope) -> list[InstanceRow]:
        level = Level(str(identifier.get("QueryRetrieveLevel", "")).strip().upper())
        filters = self._filters(identifier)
        rows = self.query.search(scope, level, filters)
        key = UNIQUE_KEYS[level]
        matched = [row[key] for row in rows]
        out: list[InstanceRow] = []
        for value in matched:
            if level is Level.PATIENT:
                for study in self.query.search(scope, Level.STUDY, {"PatientID": value}):
                    out.extend(self.catalog.instances(scope, study_uid=study["StudyInstanceUID"]))
            elif level is Level.STUDY:
                out.extend(self.catalog.instances(scope, study_uid=value))
            elif level is Level.SERIES:
                out.extend(self.catalog.instances(scope, series_uid=value))
            else:
                out.extend(self.catalog.instances(scope, sop_uid=value))
        return out

    def _read(self, row: InstanceRow) -> Dataset:
        """What a C-STORE sub-operation sends: the stored file as it is, where it is local
        (see :func:`kahu.dimse.server.send_stored_files`), else the parsed data set."""
        path = self.store.local_path(row.blob_key)
        if path is not None:
            return stored_file(path, row.sop_class_uid, row.sop_instance_uid)
        return pydicom.dcmread(io.BytesIO(self.store.get(row.blob_key)))

    def _sub_operations(
        self, event: events.Event, instances: list[InstanceRow]
    ) -> Iterator[tuple[int, Dataset | None]]:
        for row in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            try:
                yield PENDING, self._read(row)
            except Exception:
                log.exception("could not read %s for retrieval", row.sop_instance_uid)
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = [row.sop_instance_uid]
                yield OUT_OF_RESOURCES, failed
                return

    def _retrieval(
        self, event: events.Event, scope: SeriesScope | None, detail: dict[str, Any]
    ) -> tuple[list[InstanceRow], int]:
        """The instances a C-GET or C-MOVE sends and its audit record, written before any is
        sent; raises (pynetdicom then answers with a failure status) for a caller that is no
        node or when the record cannot be written."""
        if scope is None:
            self._audit(event, "retrieve", detail, status=0xC513)
            raise PermissionError("calling AE title is not a known node")
        self._level(event, event.identifier)
        instances = self._instances(event.identifier, scope)
        series = sorted({i.series_instance_uid for i in instances})
        detail = {**detail, "instances": len(instances)}
        return instances, self._audit(event, "retrieve", detail, series=series)

    def _sending(
        self, event: events.Event, instances: list[InstanceRow], record: int
    ) -> Iterator[tuple[int, Dataset | None]]:
        yield from self._sub_operations(event, instances)
        self.audit.finish(record, 0)  # not reached when the peer cancels or aborts

    def handle_get(self, event: events.Event) -> Iterator[Any]:
        detail = {"c-get": self._filters(event.identifier)}
        try:
            instances, record = self._retrieval(event, self._scope(event), detail)
        except (InvalidInput, ValueError) as exc:
            self._audit(event, "retrieve", {**detail, "error": str(exc)}, status=0xC413)
            # pynetdicom answers a count of 0 with Success, whatever follows; an error
            # here is answered with a failure (0xC413) and the reason as its comment
            raise InvalidIdentifier(str(exc)) from exc
        yield len(instances)
        yield from self._sending(event, instances, record)

    def handle_move(self, event: events.Event) -> Iterator[Any]:
        destination = event.move_destination
        aet = (
            destination.decode(errors="replace")
            if isinstance(destination, bytes)
            else str(destination)
        )
        node = self.nodes.by_ae_title(aet.strip())
        if node is None:
            log.warning("C-MOVE to unknown destination %r", aet)
            yield None, None
            return
        detail = {"c-move": self._filters(event.identifier), "destination": node.name}
        try:
            instances, record = self._retrieval(event, self._scope(event, node.ae_title), detail)
        except (InvalidInput, ValueError) as exc:
            self._audit(event, "retrieve", {**detail, "error": str(exc)}, status=0xC513)
            yield node.host, node.port
            raise InvalidIdentifier(str(exc)) from exc  # a failure (0xC513), as for C-GET
        except Exception:
            yield node.host, node.port  # the failure is answered at the next step
            raise
        # propose exactly the stored (SOP class, transfer syntax) pairs: no transcoding
        pairs = sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in instances})[:128]
        contexts = [build_context(sop, [ts]) for sop, ts in pairs]
        yield node.host, node.port, {"contexts": contexts}
        yield len(instances)
        yield from self._sending(event, instances, record)


class InvalidIdentifier(ValueError):
    """A C-GET or C-MOVE identifier Kahu cannot match (a bad level, key or range)."""


def _status(code: int, comment: str) -> Any:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _response(identifier: Dataset, level: Level, row: dict[str, Any]) -> Dataset:
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    out.QueryRetrieveLevel = level.value
    for elem in identifier:
        keyword = elem.keyword or keyword_for_tag(elem.tag)
        if keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or not keyword:
            continue
        value = row.get(keyword)
        if keyword in DERIVED and keyword not in row:
            value = None
        vr = elem.VR if elem.VR not in ("UN", None) else dictionary_VR(elem.tag)
        if value is None or value == []:
            out.add_new(elem.tag, vr, None if vr != "SQ" else [])
        else:
            out.add_new(
                elem.tag, vr, value if not isinstance(value, int) or vr != "IS" else str(value)
            )
    unique = UNIQUE_KEYS[level]
    if unique not in out and row.get(unique) is not None:
        setattr(out, unique, row[unique])
    return out
