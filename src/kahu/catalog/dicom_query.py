"""Attribute matching of PS3.4 C.2.2.2 (single value, wildcard, range, UID list, universal).

One engine for C-FIND and QIDO-RS: a query names a level and ``{keyword: value}`` filters in
DICOM string form; results are ``{keyword: value}`` rows in DICOM string form, ready to encode
as C-FIND identifiers or DICOM JSON.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, distinct, exists, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from kahu.catalog.database import Database
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import Instance, Patient, Series, Study
from kahu.dicom import values
from kahu.dicom.uids import is_valid_uid
from kahu.errors import InvalidInput


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]


@dataclass(frozen=True, slots=True)
class Attribute:
    keyword: str
    level: Level
    vr: str
    column: InstrumentedAttribute[Any]


ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in [
        Attribute("PatientID", Level.PATIENT, "LO", Patient.patient_id),
        Attribute("IssuerOfPatientID", Level.PATIENT, "LO", Patient.issuer),
        Attribute("PatientName", Level.PATIENT, "PN", Patient.patient_name),
        Attribute("PatientBirthDate", Level.PATIENT, "DA", Patient.birth_date),
        Attribute("PatientSex", Level.PATIENT, "CS", Patient.sex),
        Attribute("StudyInstanceUID", Level.STUDY, "UI", Study.study_instance_uid),
        Attribute("StudyDate", Level.STUDY, "DA", Study.study_date),
        Attribute("StudyTime", Level.STUDY, "TM", Study.study_time),
        Attribute("AccessionNumber", Level.STUDY, "SH", Study.accession_number),
        Attribute("StudyID", Level.STUDY, "SH", Study.study_id),
        Attribute("StudyDescription", Level.STUDY, "LO", Study.study_description),
        Attribute("ReferringPhysicianName", Level.STUDY, "PN", Study.referring_physician_name),
        Attribute("SeriesInstanceUID", Level.SERIES, "UI", Series.series_instance_uid),
        Attribute("Modality", Level.SERIES, "CS", Series.modality),
        Attribute("SeriesNumber", Level.SERIES, "IS", Series.series_number),
        Attribute("SeriesDescription", Level.SERIES, "LO", Series.series_description),
        Attribute("BodyPartExamined", Level.SERIES, "CS", Series.body_part_examined),
        Attribute("SeriesDate", Level.SERIES, "DA", Series.series_date),
        Attribute("SOPInstanceUID", Level.IMAGE, "UI", Instance.sop_instance_uid),
        Attribute("SOPClassUID", Level.IMAGE, "UI", Instance.sop_class_uid),
        Attribute("InstanceNumber", Level.IMAGE, "IS", Instance.instance_number),
        Attribute("NumberOfFrames", Level.IMAGE, "IS", Instance.number_of_frames),
        Attribute("Rows", Level.IMAGE, "US", Instance.rows),
        Attribute("Columns", Level.IMAGE, "US", Instance.columns),
    ]
}

#: Attributes computed from the rows below a level (PS3.4 C.3, C.6.1.1.5).
DERIVED: dict[str, Level] = {
    "NumberOfPatientRelatedStudies": Level.PATIENT,
    "NumberOfPatientRelatedSeries": Level.PATIENT,
    "NumberOfPatientRelatedInstances": Level.PATIENT,
    "ModalitiesInStudy": Level.STUDY,
    "SOPClassesInStudy": Level.STUDY,
    "NumberOfStudyRelatedSeries": Level.STUDY,
    "NumberOfStudyRelatedInstances": Level.STUDY,
    "NumberOfSeriesRelatedInstances": Level.SERIES,
}

#: The unique key of each level (always returned).
UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

_PK = {
    Level.PATIENT: Patient.id,
    Level.STUDY: Study.id,
    Level.SERIES: Series.id,
    Level.IMAGE: Instance.id,
}


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _to_iso(vr: str, text: str) -> str:
    try:
        return values.parse_da(text) if vr == "DA" else values.parse_tm(text)
    except ValueError as exc:
        raise InvalidInput(f"invalid {vr} value {text!r} in query") from exc


def _range(column: ColumnElement[Any], vr: str, text: str) -> ColumnElement[bool]:
    low, _, high = text.partition("-")
    clauses = []
    if low.strip():
        clauses.append(column >= _to_iso(vr, low))
    if high.strip():
        upper = _to_iso(vr, high)
        # a time range's upper bound includes every fraction of its last second/minute
        clauses.append(column <= upper + "\uffff" if vr == "TM" else column <= upper)
    if not clauses:
        raise InvalidInput(f"empty range {text!r}")
    return and_(*clauses)


def match_clause(attr: Attribute, raw: str, *, fuzzy: bool = False) -> ColumnElement[bool] | None:
    """The SQL condition for one matching key; ``None`` for universal matching."""
    value = raw.strip() if attr.vr != "PN" else raw.strip().rstrip("^ ")
    if value in ("", "*"):
        return None
    column = cast("ColumnElement[Any]", attr.column)
    if attr.vr == "UI":
        uids = [u.strip() for u in value.split("\\")]
        for uid in uids:
            if not is_valid_uid(uid):
                raise InvalidInput(f"invalid UID {uid!r} in {attr.keyword}")
        return column.in_(uids) if len(uids) > 1 else column == uids[0]
    if attr.vr in ("DA", "TM"):
        if "-" in value:
            return _range(column, attr.vr, value)
        if "\\" in value:
            return column.in_([_to_iso(attr.vr, v) for v in value.split("\\")])
        iso = _to_iso(attr.vr, value)
        return column.like(iso + "%") if attr.vr == "TM" else column == iso
    if attr.vr in ("IS", "US"):
        try:
            numbers = [int(v) for v in value.split("\\")]
        except ValueError as exc:
            raise InvalidInput(f"invalid number {value!r} in {attr.keyword}") from exc
        return column.in_(numbers)
    if "\\" in value:
        clauses = [match_clause(attr, v, fuzzy=fuzzy) for v in value.split("\\")]
        if any(c is None for c in clauses):
            return None  # one universal value matches everything
        return or_(*(c for c in clauses if c is not None))
    if attr.vr == "PN":
        # PN matching is case-insensitive (PS3.4 C.2.2.2.1); fuzzy also matches any name part
        pattern = _like_pattern(value).lower()
        if "%" not in pattern and "_" not in pattern.replace("\\_", ""):
            exact = func.lower(column) == pattern.replace("\\\\", "\\")
            if not fuzzy:
                return exact
        if fuzzy:
            return or_(
                func.lower(column).like(pattern + "%", escape="\\"),
                func.lower(column).like("%^" + pattern + "%", escape="\\"),
                func.lower(column).like("% " + pattern + "%", escape="\\"),
            )
        return func.lower(column).like(pattern, escape="\\")
    if "*" in value or "?" in value:
        return column.like(_like_pattern(value), escape="\\")
    return column == value


def _base(level: Level) -> Select[Any]:
    stmt: Select[Any] = select(_PK[level])
    if level is Level.PATIENT:
        return stmt.select_from(Patient)
    stmt = stmt.select_from(Study).join(Patient, Study.patient_pk == Patient.id)
    if level is Level.STUDY:
        return stmt
    stmt = stmt.join(Series, Series.study_pk == Study.id)
    if level is Level.SERIES:
        return stmt
    return stmt.join(Instance, Instance.series_pk == Series.id)


def _to_dicom(vr: str, value: Any) -> Any:
    if value is None:
        return None
    if vr == "DA":
        return str(value).replace("-", "")
    if vr == "TM":
        return str(value).replace(":", "")
    return value


class DicomQuery:
    """Run a C-FIND/QIDO style query against the catalog."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def search(
        self,
        scope: SeriesScope,
        level: Level,
        filters: Mapping[str, str],
        *,
        limit: int | None = None,
        offset: int = 0,
        fuzzy: bool = False,
        extra_conditions: list[ColumnElement[bool]] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of every attribute at or above ``level`` plus the derived ones of ``level``.

        ``scope`` (a read scope) limits everything to the series it allows: a patient or
        study shows only with such a series, and the derived counts count only those."""
        series_scope = scope.condition()
        depth = _ORDER.index(level)
        stmt = _base(level)
        for keyword, raw in filters.items():
            if raw is None:
                continue
            if keyword in ATTRIBUTES:
                attr = ATTRIBUTES[keyword]
                if _ORDER.index(attr.level) > depth:
                    continue  # a key below the query level cannot restrict it
                clause = match_clause(attr, str(raw), fuzzy=fuzzy)
                if clause is not None:
                    stmt = stmt.where(clause)
            elif keyword == "ModalitiesInStudy" and depth >= 1 and str(raw).strip():
                mods = [m.strip() for m in str(raw).split("\\") if m.strip()]
                stmt = stmt.where(
                    exists().where(Series.study_pk == Study.id, Series.modality.in_(mods))
                    if level is Level.STUDY
                    else Study.id.in_(select(Series.study_pk).where(Series.modality.in_(mods)))
                )
        for condition in extra_conditions or []:
            stmt = stmt.where(condition)
        if series_scope is not None:
            if level is Level.PATIENT:
                stmt = stmt.where(
                    exists()
                    .where(Study.patient_pk == Patient.id, Series.study_pk == Study.id)
                    .where(series_scope)
                )
            elif level is Level.STUDY:
                stmt = stmt.where(exists().where(Series.study_pk == Study.id).where(series_scope))
            else:
                stmt = stmt.where(series_scope)
        pk = _PK[level]
        stmt = stmt.order_by(pk).distinct()
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        columns = [a for a in ATTRIBUTES.values() if _ORDER.index(a.level) <= depth]
        with self.db.read() as s:
            ids = list(s.scalars(stmt))
            if not ids:
                return []
            detail = _base(level).with_only_columns(pk, *(a.column for a in columns))
            rows: dict[int, dict[str, Any]] = {}
            for row in s.execute(detail.where(pk.in_(ids))):
                rows[row[0]] = {
                    a.keyword: _to_dicom(a.vr, v) for a, v in zip(columns, row[1:], strict=True)
                }
            self._derived(s, level, rows, series_scope)
        return [rows[i] for i in ids if i in rows]

    @staticmethod
    def _derived(
        s: Any, level: Level, rows: dict[int, dict[str, Any]], scope: ColumnElement[bool] | None
    ) -> None:
        ids = list(rows)
        allowed = true() if scope is None else scope
        if level is Level.PATIENT:
            stmt = (
                select(
                    Patient.id,
                    func.count(distinct(Study.id)),
                    func.count(distinct(Series.id)),
                    func.coalesce(func.sum(Series.instance_count), 0),
                )
                .select_from(Patient)
                .join(Study, Study.patient_pk == Patient.id)
                .join(Series, Series.study_pk == Study.id)
                .where(Patient.id.in_(ids), allowed)
                .group_by(Patient.id)
            )
            for pid, studies, series, instances in s.execute(stmt):
                rows[pid]["NumberOfPatientRelatedStudies"] = studies
                rows[pid]["NumberOfPatientRelatedSeries"] = series
                rows[pid]["NumberOfPatientRelatedInstances"] = instances
        elif level is Level.STUDY:
            modalities: dict[int, set[str]] = defaultdict(set)
            counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for sid, modality, count in s.execute(
                select(Series.study_pk, Series.modality, Series.instance_count).where(
                    Series.study_pk.in_(ids), allowed
                )
            ):
                if modality:
                    modalities[sid].add(modality)
                counts[sid][0] += 1
                counts[sid][1] += count
            classes: dict[int, set[str]] = defaultdict(set)
            for sid, uid in s.execute(
                select(Series.study_pk, Instance.sop_class_uid)
                .join(Instance, Instance.series_pk == Series.id)
                .where(Series.study_pk.in_(ids), allowed)
                .distinct()
            ):
                classes[sid].add(uid)
            for sid, row in rows.items():
                row["ModalitiesInStudy"] = sorted(modalities[sid])
                row["SOPClassesInStudy"] = sorted(classes[sid])
                row["NumberOfStudyRelatedSeries"] = counts[sid][0]
                row["NumberOfStudyRelatedInstances"] = counts[sid][1]
        elif level is Level.SERIES:
            for sid, count in s.execute(
                select(Series.id, Series.instance_count).where(Series.id.in_(ids))
            ):
                rows[sid]["NumberOfSeriesRelatedInstances"] = count
