"""The catalog repository: every write of patients, studies, series and instances (ingest,
projects, datasets, reindex, delete), on top of the reads of :mod:`kahu.catalog.reads`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from kahu.catalog.database import Database
from kahu.catalog.reads import CatalogReads
from kahu.catalog.records import InstanceFacts
from kahu.catalog.tables import (
    CatalogState,
    Dataset,
    DatasetSeries,
    Instance,
    Patient,
    Project,
    ProjectSeries,
    Series,
    SeriesTombstone,
    Study,
    utcnow,
)
from kahu.errors import NotFound

#: where data goes that names no project (and where an upgraded catalog's series are)
DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    inserted: bool
    existing_sha256: str | None
    new_series: bool
    stored_series_uid: str | None = None


@dataclass(frozen=True, slots=True)
class NewInstance:
    facts: InstanceFacts
    blob_key: str
    size_bytes: int
    sha256: str
    document: Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class NewSeries:
    """A series registered by metadata alone: ``facts`` of one of its instances (patient,
    study and series attributes are read), its document, and its size."""

    facts: InstanceFacts
    document: dict[str, Any]
    instance_count: int = 0
    size_bytes: int = 0


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters taken out of its text: real headers hold them inside
    values (broken padding), PostgreSQL refuses them in text and JSON, and no search means
    them."""
    if isinstance(value, str):
        return value.replace("\0", "") if "\0" in value else value
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, InstanceFacts):
        changed = {
            f.name: _without_nul(getattr(value, f.name))
            for f in fields(value)
            if isinstance(getattr(value, f.name), str) and "\0" in getattr(value, f.name)
        }
        return replace(value, **changed) if changed else value
    return value


def touch_series(conn: Connection, series_pks: Collection[int]) -> None:
    """Searches see these series anew (their projects changed): they take one new generation
    and their old entries in the column index are tombstoned, as a reindex does."""
    if not series_pks:
        return
    generation = Catalog._next_generation(conn)
    pks = sorted(set(series_pks))
    for chunk in _chunks(pks):
        conn.execute(update(Series).where(Series.id.in_(chunk)).values(generation=generation))
    conn.execute(
        insert(SeriesTombstone), [{"generation": generation, "series_pk": pk} for pk in pks]
    )


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Catalog(CatalogReads):
    """Repository over a :class:`Database`; the same code runs on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # series UID -> primary key, and (dataset, series) pairs, known to exist; both only
        # ever grow by our own commits and shrink by our own deletes (others: IntegrityError)
        self._series_pk: dict[str, int] = {}
        self._members: set[tuple[str, int]] = set()
        # project name -> primary key, and (project, series) pairs known to exist
        self._project_pks: dict[str, int] = {}
        self._in_project: set[tuple[int, int]] = set()
        self._series_stmt: Select[Any] | None = None
        self._by_pks_stmt: Select[Any] | None = None
        self._prepare()

    # -- writes -------------------------------------------------------------------------------
    # Ingest is the hot path: Core statements built once, a series-id cache, and one short
    # write transaction per instance (the fsync of its commit is the durability point).

    def _insert(self, table: Any) -> Any:
        """INSERT that supports ``on_conflict_do_nothing`` on both backends."""
        dialect = postgresql if self.db.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def _prepare(self) -> None:
        self._q_existing = (
            select(Instance.sha256, Series.series_instance_uid)
            .join(Series, Instance.series_pk == Series.id)
            .where(Instance.sop_instance_uid == bindparam("sop"))
        )
        self._q_known = select(Instance.sop_instance_uid).where(
            Instance.sop_instance_uid.in_(bindparam("sops", expanding=True))
        )
        self._q_series_pk = select(Series.id).where(Series.series_instance_uid == bindparam("uid"))
        # RETURNING tells "inserted" from "already there" on both backends (rowcount is -1
        # for an INSERT with RETURNING on psycopg)
        self._q_insert_instance = (
            self._insert(Instance).on_conflict_do_nothing().returning(Instance.id)
        )
        self._q_count = (
            update(Series)
            .where(Series.id == bindparam("pk"))
            .values(
                instance_count=Series.instance_count + 1,
                size_bytes=Series.size_bytes + bindparam("size"),
                updated_at=bindparam("now"),
            )
        )

    def add_instances(
        self,
        items: Sequence[NewInstance],
        *,
        dataset: str | None,
        origin: str = "ae",
        project: str | None = None,
        before_commit: Callable[[list[StoredOutcome]], None] | None = None,
    ) -> list[StoredOutcome]:
        """Record instances in one transaction; idempotent per SOPInstanceUID. Their series
        join ``project`` (the default project when None).

        ``before_commit`` runs inside the transaction once the outcomes are known (the
        ingest path publishes the new files there); if it raises, nothing is recorded. Each
        series' document is built only for a new series.
        """
        project_pk = self.project_pk(project or DEFAULT_PROJECT)
        try:
            return self._add_instances(items, dataset, origin, project_pk, before_commit)
        except IntegrityError:
            # a cached series or project was deleted by another process: forget them and
            # try once more
            self._series_pk.clear()
            self.forget_projects()
            project_pk = self.project_pk(project or DEFAULT_PROJECT)
            return self._add_instances(items, dataset, origin, project_pk, before_commit)

    def project_pk(self, name: str) -> int:
        """The primary key of project ``name`` (NotFound when there is none)."""
        pk = self._project_pks.get(name)
        if pk is None:
            with self.db.read() as s:
                pk = s.scalar(select(Project.id).where(Project.name == name))
            if pk is None:
                raise NotFound(f"no project {name!r}")
            self._project_pks[name] = pk
        return pk

    def forget_projects(self) -> None:
        """Drop the ingest path's memory of projects and memberships (after removals)."""
        self._project_pks.clear()
        self._in_project.clear()

    def add_to_project(self, project: str, series_uid: str) -> None:
        """The series joins ``project`` too (a copy arriving through another project)."""
        project_pk = self.project_pk(project)
        known = self._series_pk.get(series_uid)
        if known is not None and (project_pk, known) in self._in_project:
            return
        with self.db.write_connection() as conn:
            series_pk = conn.scalar(self._q_series_pk, {"uid": series_uid})
            if series_pk is None:
                raise NotFound(f"no series {series_uid}")
            if self._join_project(conn, project_pk, series_pk):
                touch_series(conn, [series_pk])
        self._in_project.add((project_pk, series_pk))

    def _join_project(self, conn: Connection, project_pk: int, series_pk: int) -> bool:
        """Whether the series joined the project now (False: it was a member already)."""
        inserted = conn.execute(
            self._insert(ProjectSeries)
            .values(project_pk=project_pk, series_pk=series_pk, added_at=utcnow())
            .on_conflict_do_nothing()
            .returning(ProjectSeries.series_pk)
        ).first()
        return inserted is not None

    def _add_instances(
        self,
        items: Sequence[NewInstance],
        dataset: str | None,
        origin: str,
        project_pk: int,
        before_commit: Callable[[list[StoredOutcome]], None] | None,
    ) -> list[StoredOutcome]:
        now = utcnow()
        outcomes: list[StoredOutcome] = []
        learned: dict[str, int] = {}
        joined: set[tuple[str, int]] = set()
        in_project: set[tuple[int, int]] = set()
        generation: list[int] = []  # taken by the first new series of the transaction
        created: set[int] = set()  # series created by this transaction
        with self.db.write_connection() as conn:
            # An instance of a series not created yet might be a copy stored in another series:
            # look those up first, so that no empty series is created for them. Of a known
            # series, the insert itself tells (the common case while a series streams in).
            unsure = [
                i.facts.sop_instance_uid
                for i in items
                if i.facts.series_instance_uid not in self._series_pk
            ]
            known = (
                {sop for (sop,) in conn.execute(self._q_known, {"sops": unsure})}
                if unsure
                else set()
            )
            for item in items:
                facts = item.facts
                if facts.sop_instance_uid in known or not self._insert_instance(
                    conn, item, (dataset, origin, project_pk), now, learned, joined, outcomes,
                    generation, created,
                ):  # fmt: skip
                    row = conn.execute(self._q_existing, {"sop": facts.sop_instance_uid}).first()
                    assert row is not None
                    outcomes.append(StoredOutcome(False, row[0], False, row[1]))
            touched = []
            for series_pk in set(learned.values()):
                member = (project_pk, series_pk)
                if member not in self._in_project:
                    if self._join_project(conn, project_pk, series_pk) and series_pk not in created:
                        touched.append(series_pk)  # an older series: searches must see it anew
                    in_project.add(member)
            touch_series(conn, touched)
            if before_commit is not None:
                before_commit(outcomes)
        self._series_pk.update(learned)
        self._members |= joined
        self._in_project |= in_project
        return outcomes

    def _insert_instance(
        self,
        conn: Connection,
        item: NewInstance,
        into: tuple[str | None, str, int],  # dataset, origin, project
        now: datetime,
        learned: dict[str, int],
        joined: set[tuple[str, int]],
        outcomes: list[StoredOutcome],
        generation: list[int],
        created: set[int],
    ) -> bool:
        """Insert one instance (and its series when new); False when it exists already."""
        facts = item.facts
        uid = facts.series_instance_uid
        dataset, origin, project_pk = into
        new_series = False
        series_pk = learned.get(uid) or self._series_pk.get(uid)
        if series_pk is None:
            series_pk = conn.execute(self._q_series_pk, {"uid": uid}).scalar()
            if series_pk is None:
                new_series = True
                if not generation:
                    generation.append(self._next_generation(conn))
                series_pk = self._create_series(
                    conn, [(facts, item.document(), 0, 0)], now, generation[0]
                )[0]
                created.add(series_pk)
        learned[uid] = series_pk
        inserted = conn.execute(
            self._q_insert_instance,
            {
                "sop_instance_uid": facts.sop_instance_uid,
                "series_pk": series_pk,
                "sop_class_uid": facts.sop_class_uid,
                "instance_number": facts.instance_number,
                "transfer_syntax_uid": facts.transfer_syntax_uid,
                "blob_key": item.blob_key,
                "size_bytes": item.size_bytes,
                "sha256": item.sha256,
                "number_of_frames": facts.number_of_frames,
                "rows": facts.rows,
                "columns": facts.columns,
                "received_at": now,
            },
        ).first()
        if inserted is None:  # a concurrent writer (PostgreSQL) stored it first
            return False
        conn.execute(self._q_count, {"pk": series_pk, "size": item.size_bytes, "now": now})
        member = (dataset, series_pk) if dataset else None
        if member and member not in self._members and member not in joined:
            self._join_dataset(conn, member[0], series_pk, origin, project_pk)
            joined.add(member)
        outcomes.append(StoredOutcome(True, None, new_series))
        return True

    def _create_series(
        self,
        conn: Connection,
        items: Sequence[tuple[InstanceFacts, dict[str, Any], int, int]],
        now: datetime,
        generation: int,
    ) -> list[int]:
        """Insert series (facts of one of their instances, document, instance count, bytes)
        with their patients and studies where new; return the series' primary keys. Series
        that exist already are left as they are."""
        items = [(_without_nul(f), _without_nul(d), n, b) for f, d, n, b in items]
        patients = {(f.patient_id, f.issuer_of_patient_id): f for f, *_ in items}
        conn.execute(
            self._insert(Patient).on_conflict_do_nothing(),
            [
                {
                    "patient_id": f.patient_id,
                    "issuer": f.issuer_of_patient_id,
                    "patient_name": f.patient_name,
                    "birth_date": f.patient_birth_date,
                    "sex": f.patient_sex,
                }
                for f in patients.values()
            ],
        )
        patient_pks: dict[tuple[str, str], int] = {}
        for chunk in _chunks(sorted({pid for pid, _ in patients})):
            for pk, pid, issuer in conn.execute(
                select(Patient.id, Patient.patient_id, Patient.issuer).where(
                    Patient.patient_id.in_(chunk)
                )
            ):
                patient_pks[(pid, issuer)] = pk
        studies = {f.study_instance_uid: f for f, *_ in items}
        conn.execute(
            self._insert(Study).on_conflict_do_nothing(),
            [
                {
                    "study_instance_uid": uid,
                    "patient_pk": patient_pks[(f.patient_id, f.issuer_of_patient_id)],
                    "study_date": f.study_date,
                    "study_time": f.study_time,
                    "accession_number": f.accession_number,
                    "study_id": f.study_id,
                    "study_description": f.study_description,
                    "referring_physician_name": f.referring_physician_name,
                    "created_at": now,
                }
                for uid, f in studies.items()
            ],
        )
        study_pks = self._pks(conn, Study.id, Study.study_instance_uid, studies)
        conn.execute(
            self._insert(Series).on_conflict_do_nothing(),
            [
                {
                    "series_instance_uid": f.series_instance_uid,
                    "study_pk": study_pks[f.study_instance_uid],
                    "modality": f.modality,
                    "series_number": f.series_number,
                    "series_description": f.series_description,
                    "body_part_examined": f.body_part_examined,
                    "series_date": f.series_date,
                    "received_at": now,
                    "updated_at": now,
                    "instance_count": count,
                    "size_bytes": size,
                    "document": document,
                    "generation": generation,
                }
                for f, document, count, size in items
            ],
        )
        series_pks = self._pks(
            conn, Series.id, Series.series_instance_uid, [f.series_instance_uid for f, *_ in items]
        )
        return [series_pks[f.series_instance_uid] for f, *_ in items]

    @staticmethod
    def _pks(conn: Connection, pk: Any, uid: Any, uids: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(set(uids))):
            found.update(
                (u, int(k)) for k, u in conn.execute(select(pk, uid).where(uid.in_(chunk)))
            )
        return found

    @staticmethod
    def _next_generation(conn: Connection) -> int:
        """Take the next series generation (see :class:`~kahu.catalog.tables.CatalogState`)."""
        value = conn.execute(
            update(CatalogState)
            .where(CatalogState.key == "series_generation")
            .values(value=CatalogState.value + 1)
            .returning(CatalogState.value)
        ).scalar_one()
        return int(value)

    def add_series(
        self,
        items: Sequence[NewSeries],
        *,
        dataset: str | None = None,
        project: str | None = None,
    ) -> int:
        """Register series by their metadata alone, without instances (the catalog of another
        archive, a benchmark's million series), in one transaction, in ``project`` (the
        default project when None); series already known are left as they are. Returns how
        many were new."""
        if not items:
            return 0
        project_pk = self.project_pk(project or DEFAULT_PROJECT)
        now = utcnow()
        with self.db.write_connection() as conn:
            uids = [item.facts.series_instance_uid for item in items]
            known = self._pks(conn, Series.id, Series.series_instance_uid, uids)
            fresh = {
                item.facts.series_instance_uid: item
                for item in items
                if item.facts.series_instance_uid not in known
            }
            if not fresh:
                return 0
            pks = self._create_series(
                conn,
                [(i.facts, i.document, i.instance_count, i.size_bytes) for i in fresh.values()],
                now,
                self._next_generation(conn),
            )
            conn.execute(
                insert(ProjectSeries),
                [{"project_pk": project_pk, "series_pk": pk, "added_at": now} for pk in pks],
            )
            if dataset:
                for pk in pks:
                    self._join_dataset(conn, dataset, pk, "import", project_pk)
        return len(pks)

    def add_to_dataset(
        self, name: str, series_uid: str, *, origin: str = "manual", project: str | None = None
    ) -> None:
        """Add a series to a dataset, creating the dataset if it does not exist."""
        with self.db.write_connection() as conn:
            series_pk = conn.scalar(self._q_series_pk, {"uid": series_uid})
            if series_pk is None:
                raise NotFound(f"no series {series_uid}")
            self._join_dataset(
                conn, name, series_pk, origin, self.project_pk(project or DEFAULT_PROJECT)
            )
        self._members.add((name, series_pk))

    def forget_dataset_members(self) -> None:
        """Drop the ingest path's memory of dataset memberships (after removals)."""
        self._members.clear()

    def _join_dataset(
        self, conn: Connection, name: str, series_pk: int, origin: str, project_pk: int
    ) -> None:
        """The series joins dataset ``name``, created (in the project) when new."""
        project = select(Project.name).where(Project.id == project_pk).scalar_subquery()
        conn.execute(
            self._insert(Dataset)
            .values(name=name, description="", origin=origin, created_at=utcnow(), project=project)
            .on_conflict_do_nothing()
        )
        dataset_pk = conn.scalar(select(Dataset.id).where(Dataset.name == name))
        conn.execute(
            self._insert(DatasetSeries)
            .values(dataset_pk=dataset_pk, series_pk=series_pk, added_at=utcnow())
            .on_conflict_do_nothing()
        )

    def reindex_series(
        self, series_uid: str, facts: InstanceFacts, document: dict[str, Any]
    ) -> None:
        """Replace a series' document and the columns derived from it (metadata extracted
        again from its files); searches see the change as the series leaving and coming
        back in one new generation."""
        facts, document = _without_nul(facts), _without_nul(document)
        with self.db.write() as s:
            series_pk = s.scalar(select(Series.id).where(Series.series_instance_uid == series_uid))
            if series_pk is None:
                raise NotFound(f"no series {series_uid}")
            generation = self._next_generation(s.connection())
            s.execute(
                update(Series)
                .where(Series.id == series_pk)
                .values(
                    modality=facts.modality,
                    series_number=facts.series_number,
                    series_description=facts.series_description,
                    body_part_examined=facts.body_part_examined,
                    series_date=facts.series_date,
                    document=document,
                    updated_at=utcnow(),
                    generation=generation,
                )
            )
            s.execute(insert(SeriesTombstone).values(generation=generation, series_pk=series_pk))

    def delete_series(self, series_uid: str) -> list[str]:
        """Remove a series' rows (and studies/patients left empty); return its blob keys."""
        with self.db.write() as s:
            row = s.execute(
                select(Series.id, Series.study_pk).where(Series.series_instance_uid == series_uid)
            ).first()
            if row is None:
                raise NotFound(f"no series {series_uid}")
            series_pk, study_pk = row
            keys = list(s.scalars(select(Instance.blob_key).where(Instance.series_pk == series_pk)))
            self._series_pk.pop(series_uid, None)
            self._members = {m for m in self._members if m[1] != series_pk}
            self._in_project = {m for m in self._in_project if m[1] != series_pk}
            s.execute(delete(Instance).where(Instance.series_pk == series_pk))
            s.execute(delete(DatasetSeries).where(DatasetSeries.series_pk == series_pk))
            s.execute(delete(Series).where(Series.id == series_pk))
            generation = self._next_generation(s.connection())
            s.execute(insert(SeriesTombstone).values(generation=generation, series_pk=series_pk))
            if s.scalar(select(func.count()).where(Series.study_pk == study_pk)) == 0:
                patient_pk = s.scalar(select(Study.patient_pk).where(Study.id == study_pk))
                s.execute(delete(Study).where(Study.id == study_pk))
                if s.scalar(select(func.count()).where(Study.patient_pk == patient_pk)) == 0:
                    s.execute(delete(Patient).where(Patient.id == patient_pk))
        return keys
