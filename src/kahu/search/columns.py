"""An in-memory column index of the searched fields of every series, for counts, facets and
first pages at a million series in milliseconds.

The catalog's database stays the truth and answers everything; this index answers the common
queries faster. Each indexed field is dictionary-encoded: each distinct value of the field (a
multi-valued one as a tuple) is kept once, and every series holds its value's code, in the
narrowest unsigned integers that fit. A query becomes a test on the distinct values, then one
vectorized lookup per series; a facet is a ``bincount`` over the matched codes. Queries on
anything else (catalog columns such as ``received_at``, sorting by a field) go to SQL, with
the same results.

The index follows the catalog by its series generations (:class:`~kahu.catalog.tables.
CatalogState`): a search first reads the current generation (one row) and, when it moved,
loads the series created and the tombstones of those deleted since, so what it answers is
what the database holds at that moment, whichever process wrote it.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Integer, Text, cast, func, literal, select

from kahu.catalog.repository import Catalog
from kahu.catalog.tables import (
    CatalogState,
    Dataset,
    DatasetSeries,
    ProjectSeries,
    Series,
    SeriesTag,
    SeriesTombstone,
    Study,
)
from kahu.search.fields import DESCRIPTIVE, Field
from kahu.search.query import (
    And,
    InProjects,
    Like,
    MatchAll,
    Node,
    Not,
    Or,
)

log = logging.getLogger(__name__)

#: Document fields held in the index: the descriptive fields a bare term searches, and those
#: dashboards count and cohorts are cut by.
INDEXED_FIELDS: tuple[str, ...] = (
    *(name for name in DESCRIPTIVE if name not in ("dataset", "tags")),
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "SeriesDate",
    "ContrastBolusAgent",
    "SliceThickness",
    "modality_curated",
    "is_localizer",
)

#: The column of each series' projects (comma-separated primary keys); no field has this name.
MEMBERSHIP = "\0projects"

Mask = NDArray[np.bool_]
Codes = NDArray[np.unsignedinteger[Any]]


def _dtype(size: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest codes for a dictionary of ``size`` values: comparing a million bytes is
    several times faster than a million 32-bit integers."""
    if size <= 1 << 8:
        return np.uint8
    if size <= 1 << 16:
        return np.uint16
    return np.uint32


def _items(value: Any) -> Sequence[Any]:
    """The values a stored value stands for (what SQL's JSON expansion yields, except that a
    JSON null counts as missing: documents leave out what has no value)."""
    if value is None:
        return ()
    if isinstance(value, tuple):
        return value
    return (value,)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Column:
    """One field: its distinct values (a multi-valued one as a tuple) and their codes; code 0
    is "no value"."""

    def __init__(self) -> None:
        self.codes_of: dict[Any, int] = {None: 0}
        self.values: list[Any] = [None]
        self.lock = threading.Lock()
        self._lowered: list[str] = []
        self._multi = False

    def encode(self, column: Sequence[Any]) -> Codes:
        codes_of, values = self.codes_of, self.values
        try:
            distinct = dict.fromkeys(column)
        except TypeError:  # lists (multi-valued) are not hashable: tuples are
            column = [tuple(v) if isinstance(v, list) else v for v in column]
            distinct = dict.fromkeys(column)
        for value in distinct:
            if value not in codes_of:
                codes_of[value] = len(values)
                values.append(value)
        return np.fromiter(map(codes_of.__getitem__, column), _dtype(len(values)), len(column))

    def test(self, accept: Callable[[Any], bool], size: int) -> Mask:
        """Per code (of the first ``size``): does any of its values pass ``accept``?"""
        values = self.values[:size]
        return np.fromiter(
            (any(accept(item) for item in _items(value)) for value in values), bool, len(values)
        )

    def lowered(self, size: int) -> list[str] | None:
        """The first ``size`` values in lower case, non-text as "\0" (which no search text
        holds); None when the field has multi-valued codes (then :meth:`test` answers)."""
        with self.lock:
            lowered = self._lowered
            if self._multi:
                return None
            for value in self.values[len(lowered) :]:
                if isinstance(value, tuple):
                    self._multi = True
                    return None
                lowered.append(value.lower() if isinstance(value, str) else "\0")
        return lowered[:size]

    def text_test(self, kind: str, text: str, size: int) -> Mask | None:
        """Per code: is one of its text values ``text`` (kind 'equal'), does it start with it
        ('prefix'), end with it ('suffix') or hold it ('contains'), ignoring case? None when
        :meth:`test` must answer."""
        lowered = self.lowered(size)
        if lowered is None or not text:
            return None
        needle = text.lower()
        if kind == "equal":
            hits = [v == needle for v in lowered]
        elif kind == "prefix":
            hits = [v.startswith(needle) for v in lowered]
        elif kind == "suffix":
            hits = [v.endswith(needle) for v in lowered]
        else:
            hits = [needle in v for v in lowered]
        return np.fromiter(hits, bool, len(hits))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The index at one generation; arrays are never changed once published."""

    generation: int
    pks: NDArray[np.int64]
    received: NDArray[np.int64]  # received_at in microseconds since the epoch
    studies: NDArray[np.int64]
    patients: NDArray[np.int64]
    alive: Mask
    order: NDArray[np.int64]  # positions by (received_at, pk), oldest first
    codes: dict[str, Codes]
    sizes: dict[str, int]  # dictionary size of each column at this generation
    #: ``order`` is 0, 1, 2, ...: series arrived in primary key order (the usual case), so
    #: the newest are the last positions and a page reads the mask itself from its end
    positional: bool = False
    dense: dict[str, tuple[NDArray[np.int64], int]] = field(default_factory=dict)
    scopes: dict[frozenset[int], Mask] = field(default_factory=dict)  # see in_projects

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.alive))

    def distinct(self, name: str, mask: Mask) -> int:
        """How many different studies or patients the masked series belong to."""
        if name not in self.dense:  # racing threads compute the same thing
            keys = self.studies if name == "studies" else self.patients
            unique, inverse = np.unique(keys, return_inverse=True)
            self.dense[name] = (inverse.astype(np.int64), len(unique))
        inverse, size = self.dense[name]
        return int(np.count_nonzero(np.bincount(inverse[mask], minlength=size)))


class ColumnIndex:
    """The column index of one catalog (thread-safe; see the module docstring)."""

    def __init__(self, catalog: Catalog, fields: Sequence[str] = INDEXED_FIELDS) -> None:
        self.catalog = catalog
        self.postgres = catalog.db.engine.dialect.name == "postgresql"
        self.fields = tuple(fields)
        self.columns = {name: _Column() for name in (*self.fields, MEMBERSHIP)}
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    # -- following the catalog ----------------------------------------------------------------

    def current(self, *, wait: bool = True) -> Snapshot | None:
        """The index as of the catalog's current generation (loading what is new); None
        instead of waiting (``wait=False``) while another thread loads it for the first time
        (a million series take seconds: the caller asks SQL meanwhile)."""
        with self.catalog.db.read() as s:
            generation = int(
                s.scalar(select(CatalogState.value).where(CatalogState.key == "series_generation"))
                or 0
            )
        snapshot = self._snapshot
        if snapshot is not None and snapshot.generation >= generation:
            return snapshot
        if not self._lock.acquire(blocking=wait or snapshot is not None):
            return None
        collecting = gc.isenabled()
        gc.disable()  # millions of new objects, no cycles: the collector would only scan them
        try:
            snapshot = self._snapshot
            if snapshot is None or snapshot.generation < generation:
                snapshot = self._snapshot = self._advance(snapshot, generation)
            return snapshot
        finally:
            if collecting:
                gc.enable()
            self._lock.release()

    def warm(self) -> None:
        """Load the index (at start-up, so that the first search need not)."""
        try:
            self.current()
        except Exception:
            log.exception("the search column index could not be loaded; searches use SQL")

    def _select(self, after: int, upto: int) -> Any:
        if self.postgres:
            received: Any = cast(func.extract("epoch", Series.received_at) * 1_000_000, BigInteger)
            fields = [Series.document.op("->")(literal(name)) for name in self.fields]
            values: Any = cast(func.jsonb_build_array(*fields), Text)
        else:  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'
            seconds = cast(func.strftime("%s", Series.received_at), Integer)
            received = seconds * 1_000_000 + cast(func.substr(Series.received_at, 21, 6), Integer)
            # several paths give a JSON array (one path would give the value itself)
            paths = [literal(f'$."{name}"') for name in (*self.fields, "")]
            values = func.json_extract(Series.document, *paths)
        pk_text = cast(ProjectSeries.project_pk, Text)
        joined = func.string_agg(pk_text, ",") if self.postgres else func.group_concat(pk_text, ",")
        projects = (
            select(joined).where(ProjectSeries.series_pk == Series.id).scalar_subquery()
        )  # a membership change gives the series a new generation (Catalog.touch_series)
        return (
            select(Series.id, received, Series.study_pk, Study.patient_pk, values, projects)
            .join(Study, Study.id == Series.study_pk)
            .where(Series.generation > after, Series.generation <= upto)
        )

    def _advance(self, old: Snapshot | None, generation: int) -> Snapshot:
        after = old.generation if old is not None else -1
        with self.catalog.db.read() as s:
            rows = _fetch(s, self._select(after, generation))
            gone = [
                pk
                for (pk,) in s.execute(
                    select(SeriesTombstone.series_pk).where(
                        SeriesTombstone.generation > after, SeriesTombstone.generation <= generation
                    )
                )
            ]
        ids, received_at, study_pks, patient_pks, texts, memberships = (
            zip(*rows, strict=True) if rows else ((), (), (), (), (), ())
        )
        del rows
        pks = np.fromiter(ids, np.int64, len(ids))
        received = np.fromiter(received_at, np.int64, len(ids))
        studies = np.fromiter(study_pks, np.int64, len(ids))
        patients = np.fromiter(patient_pks, np.int64, len(ids))
        decoded: list[list[Any]] = []
        for start in range(0, len(texts), 20_000):  # one parse of many rows: C speed
            decoded += json.loads("[" + ",".join(texts[start : start + 20_000]) + "]")
        fields = list(zip(*decoded, strict=True)) if decoded else [()] * len(self.fields)
        del decoded, texts
        codes: dict[str, Codes] = {}
        fields = fields[: len(self.fields)]  # SQLite's extra path gave one more
        for name, column in zip((*self.fields, MEMBERSHIP), (*fields, memberships), strict=True):
            with self.columns[name].lock:
                codes[name] = self.columns[name].encode(column)
        sizes = {name: len(column.values) for name, column in self.columns.items()}
        if old is None:
            order = np.lexsort((pks, received)).astype(np.int64)
            return Snapshot(
                generation, pks, received, studies, patients, np.ones(len(pks), np.bool_), order,
                codes, sizes, _positional(order),
            )  # fmt: skip
        alive = old.alive
        if gone:
            alive = alive & ~np.isin(old.pks, np.fromiter(gone, np.int64, len(gone)))
        start = len(old.pks)
        all_received = np.concatenate([old.received, received])
        all_pks = np.concatenate([old.pks, pks])
        fresh = start + np.lexsort((pks, received)).astype(np.int64)
        if len(old.order) and len(fresh):
            last = old.order[-1]
            first = fresh[0]
            in_order = (all_received[last], all_pks[last]) <= (all_received[first], all_pks[first])
        else:
            in_order = True
        order = (
            np.concatenate([old.order, fresh])
            if in_order
            else np.lexsort((all_pks, all_received)).astype(np.int64)
        )
        log.debug("column index: %d series added, %d removed", len(pks), len(gone))
        return Snapshot(
            generation,
            all_pks,
            all_received,
            np.concatenate([old.studies, studies]),
            np.concatenate([old.patients, patients]),
            np.concatenate([alive, np.ones(len(pks), np.bool_)]),
            order,
            {
                name: np.concatenate([old.codes[name], codes[name]]).astype(
                    _dtype(sizes[name]), copy=False
                )
                for name in self.columns
            },
            sizes,
            _positional(order),
        )

    # -- answering ----------------------------------------------------------------------------

    def covers(self, node: Node) -> bool:
        """Whether the index can answer ``node`` (otherwise SQL does)."""
        if isinstance(node, MatchAll):
            return True
        if isinstance(node, And | Or):
            return all(self.covers(item) for item in node.items)
        if isinstance(node, Not):
            return self.covers(node.item)
        if isinstance(node, InProjects):
            return True
        fields = node.fields if isinstance(node, Like) else (node.field,)
        return all(self._covered(f) for f in fields)

    def _covered(self, f: Field) -> bool:
        return f.name in self.columns or f.column in ("dataset", "tags")

    def mask(
        self, snapshot: Snapshot, node: Node, dynamic: Mapping[str, str] | None = None
    ) -> Mask | None:
        """The live series ``node`` matches, or None when the index cannot tell (a field it
        does not hold; a query dataset whose query names one); ``dynamic`` as for
        :func:`kahu.search.sql.condition`."""
        if not self.covers(node):
            return None
        scope: frozenset[int] | None = None  # a read scope (kahu.search.query.within)
        if isinstance(node, InProjects):
            scope, node = node.projects, MatchAll()
        elif isinstance(node, And) and isinstance(node.items[-1], InProjects):
            scope = node.items[-1].projects
            node = And(node.items[:-1]) if len(node.items) > 2 else node.items[0]
        from kahu.search.column_eval import Evaluator, Uncovered, writable

        evaluator = Evaluator(self, snapshot, dynamic or {})
        try:
            matched = writable(evaluator.build(node))
        except Uncovered:
            return None
        # the scope costs no more than the live series' mask it replaces (both cached)
        matched &= snapshot.alive if scope is None else evaluator.visible(scope)
        return matched

    def page(self, snapshot: Snapshot, mask: Mask, limit: int, offset: int) -> list[int]:
        """Primary keys of the matched series, newest first (the default order): read from
        the newest end in growing steps, so a first page seldom looks at every series."""
        if limit <= 0:
            return []
        need, order = offset + limit, snapshot.order
        found: list[NDArray[np.int64]] = []
        count, end, step = 0, len(order), 4096
        while end > 0 and count < need:
            start = max(0, end - step)
            if snapshot.positional:  # a contiguous slice, no gather
                hits = np.flatnonzero(mask[start:end])[::-1] + start
            else:
                chunk = order[start:end]
                hits = chunk[mask[chunk]][::-1]
            found.append(hits)
            count += len(hits)
            end, step = start, step * 4
        newest = np.concatenate(found) if found else np.empty(0, np.int64)
        return [int(p) for p in snapshot.pks[newest[offset:need]]]

    def bucket_counts(
        self,
        snapshot: Snapshot,
        name: str,
        mask: Mask,
        key_of: Callable[[Any], Any],
    ) -> tuple[dict[Any, int], int]:
        """How many matched series have a value of ``name`` in each bucket ``key_of`` puts it
        in (None: in none; a series counts once per bucket), and how many have a value in
        some bucket."""
        codes = snapshot.codes[name]
        counts = np.bincount(codes[mask], minlength=snapshot.sizes[name])
        values = self.columns[name].values
        out: dict[Any, int] = {}
        having = 0
        for code in np.flatnonzero(counts).tolist():
            keys = {key_of(item) for item in _items(values[code])}
            keys.discard(None)
            if keys:
                having += int(counts[code])
            for key in keys:
                out[key] = out.get(key, 0) + int(counts[code])
        return out, having


def membership_pairs(catalog: Catalog, column: str | None) -> Sequence[tuple[int, str]]:
    """Every (series primary key, tag) pair for ``column`` "tags", else every (series
    primary key, dataset name) pair of the explicit dataset memberships."""
    with catalog.db.read() as s:
        if column == "tags":
            return s.execute(select(SeriesTag.series_pk, SeriesTag.tag)).all()
        return s.execute(
            select(DatasetSeries.series_pk, Dataset.name).join(
                Dataset, Dataset.id == DatasetSeries.dataset_pk
            )
        ).all()


def lookup(ok: Mask, codes: Codes) -> Mask:
    """``ok[codes]``: per series, whether its code is one of those ``ok`` marks; a handful of
    marked codes are compared directly, ten times faster than a gather."""
    marked = np.flatnonzero(ok)
    if len(marked) == 0:
        return np.zeros(len(codes), np.bool_)
    if len(marked) <= 4:
        first, *rest = marked.tolist()  # Python ints keep the comparison in the codes' width
        out: Mask = codes == first
        for code in rest:
            out |= codes == code
        return out
    taken: Mask = np.take(ok, codes)
    return taken


def _positional(order: NDArray[np.int64]) -> bool:
    return bool(np.array_equal(order, np.arange(len(order), dtype=np.int64)))


def value_order(value: Any) -> tuple[int, Any]:
    """Sort key of mixed JSON values: booleans, numbers, then text."""
    if isinstance(value, bool):
        return (0, value)
    if is_number(value):
        return (1, value)
    return (2, str(value))


def _fetch(session: Any, stmt: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the driver: a million rows skip SQLAlchemy's per-row work."""
    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect)
    params: Any = compiled.params
    if compiled.positional:
        params = [params[name] for name in compiled.positiontup]
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(compiled.string, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()
