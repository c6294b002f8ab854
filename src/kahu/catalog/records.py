"""Plain records that cross the catalog boundary (no ORM objects escape the repository)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

IngestStatus = Literal["stored", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    """What the catalog keeps of one instance, read from its header."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    series_date: str | None
    instance_number: int | None
    number_of_frames: int | None
    rows: int | None
    columns: int | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: IngestStatus
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    sop_class_uid: str | None = None
    reason: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    sha256: str
    instance_number: int | None
    number_of_frames: int | None
    rows: int | None
    columns: int | None


@dataclass(frozen=True, slots=True)
class SeriesRow:
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    modality: str | None
    series_description: str | None
    instance_count: int
    size_bytes: int
    received_at: datetime
    updated_at: datetime
    datasets: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    pk: int = 0  # the catalog's key of the series (not part of any document)

    def full_document(self) -> dict[str, Any]:
        """The stored document with the derived fields that change as instances arrive."""
        doc = dict(self.document)
        doc["dataset"] = self.datasets
        doc["tags"] = self.tags
        doc["instance_count"] = self.instance_count
        doc["size_bytes"] = self.size_bytes
        doc["received_at"] = self.received_at.isoformat().replace("+00:00", "Z")
        doc["updated_at"] = self.updated_at.isoformat().replace("+00:00", "Z")
        return doc
