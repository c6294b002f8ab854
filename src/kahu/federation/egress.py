"""The egress gate and its ledger: every byte that leaves this site for another passes
:func:`inspect` and is written to the ledger (:class:`Ledger`) before it is sent.

The gate refuses what looks like images whatever a workflow declares (DICOM, NIfTI/Analyze,
PNG/JPEG/TIFF pictures, NumPy arrays or long numeric JSON arrays, archives holding such),
outputs larger than declared, JSON that does not parse, and text naming a series or study
UID of this site's catalog. A site's policy may allow de-identified export explicitly; then
only the size and declaration checks apply.

The ledger is append-only (the database refuses deletes and changes other than marking an
entry delivered) and hash-chained: each entry's ``hash`` covers its fields and the previous
entry's hash, so a changed or removed entry breaks :meth:`Ledger.verify`."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update

from kahu.catalog.database import Database
from kahu.catalog.tables import utcnow
from kahu.errors import EgressRefused
from kahu.federation.tables import EgressEntry

GENESIS = "0" * 64
#: numbers in one JSON array above which it is refused as possible pixel data
MAX_JSON_ARRAY = 4096
#: bytes of a NumPy array allowed outside a ``weights`` output
MAX_ARRAY_BYTES = 65536
_UID = re.compile(rb"(?<![0-9.])[0-2](?:\.(?:0|[1-9][0-9]*)){4,}(?![0-9.])")
_IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"\x00\x00\x00\x0cjP  ": "a JPEG 2000 image",
}


def _imaging_format(data: bytes, kind: str, depth: int = 0) -> str | None:
    """What imaging data ``data`` looks like, or None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM (a Part 10 file)"
    if data.startswith(b"DICM"):
        return "DICOM (a Part 10 file without its preamble)"
    if len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[4:6].isalpha():
        return "DICOM (a data set without preamble)"
    if len(data) >= 348:
        for order in ("little", "big"):
            size = int.from_bytes(data[:4], order)
            if size == 348 and (data[344:348] in (b"n+1\x00", b"ni1\x00") or depth == 0):
                return "NIfTI-1 or Analyze image data"
            if size == 540 and data[4:8] in (b"n+2\x00", b"ni2\x00"):
                return "NIfTI-2 image data"
    for magic, what in _IMAGE_MAGIC.items():
        if data.startswith(magic):
            return what
    if data.startswith(b"\x93NUMPY") and (kind != "weights" and len(data) > MAX_ARRAY_BYTES):
        return f"a NumPy array of {len(data)} bytes"
    if depth < 2 and data.startswith(b"\x1f\x8b"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                inner = gz.read(4 * 1024 * 1024)
        except (OSError, EOFError):
            return "a damaged gzip stream"
        found = _imaging_format(inner, kind, depth + 1)
        return f"{found}, compressed" if found else None
    if depth < 2 and data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist()[:1000]:
                    with archive.open(member) as f:
                        found = _imaging_format(f.read(1024 * 1024), kind, depth + 1)
                    if found:
                        return f"{found} in the archive member {member.filename!r}"
        except (zipfile.BadZipFile, OSError, RuntimeError):
            return "a damaged zip archive"
    return None


def _longest_numeric_array(value: Any) -> int:
    if isinstance(value, list):
        own = len(value) if value and all(isinstance(v, int | float) for v in value) else 0
        return max([own, *(_longest_numeric_array(v) for v in value)])
    if isinstance(value, dict):
        return max([0, *(_longest_numeric_array(v) for v in value.values())])
    return 0


def inspect(
    data: bytes,
    *,
    kind: str,
    max_bytes: int,
    allow_deidentified: bool = False,
    known_uid: Callable[[str], bool] | None = None,
) -> None:
    """Refuse (:class:`EgressRefused`, naming why) what may not leave as an output of
    ``kind`` declared with ``max_bytes``."""
    if len(data) > max_bytes:
        raise EgressRefused(f"{len(data)} bytes is more than the {max_bytes} declared")
    if allow_deidentified:
        return
    found = _imaging_format(data, kind)
    if found:
        raise EgressRefused(f"the output looks like {found}: images do not leave this site")
    if kind == "json":
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise EgressRefused(f"a json output that is not JSON: {exc}") from None
        longest = _longest_numeric_array(value)
        if longest > MAX_JSON_ARRAY:
            raise EgressRefused(
                f"a JSON array of {longest} numbers (more than {MAX_JSON_ARRAY}) may be pixel data"
            )
    if known_uid is not None and kind != "weights":
        for match in _UID.finditer(data):
            uid = match.group().decode()
            if known_uid(uid):
                # the reason reaches the coordinator: it must not name the UID itself
                raise EgressRefused("the output names a UID of this site's catalog")


@dataclass(frozen=True, slots=True)
class Release:
    """What is about to leave: the fields of a ledger entry but its place in the chain."""

    partner: str
    partner_id: str
    run: str
    local_run: str
    task: str
    output: str
    kind: str
    data: bytes
    policy: dict[str, Any]
    approved_by: str


_FIELDS = (
    "seq",
    "at",
    "partner",
    "partner_id",
    "run",
    "local_run",
    "task",
    "output",
    "kind",
    "bytes",
    "sha256",
    "policy",
    "approved_by",
    "prev_hash",
)


def _entry_hash(values: dict[str, Any]) -> str:
    fields = {k: values[k] for k in _FIELDS}
    at = fields["at"]
    fields["at"] = at.isoformat() if isinstance(at, datetime) else str(at)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def entry_public(e: EgressEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at.isoformat().replace("+00:00", "Z"),
        "partner": e.partner,
        "partner_id": e.partner_id,
        "run": e.run,
        "local_run": e.local_run,
        "task": e.task,
        "output": e.output,
        "kind": e.kind,
        "bytes": e.bytes,
        "sha256": e.sha256,
        "policy": json.loads(e.policy),
        "approved_by": e.approved_by,
        "delivered": e.delivered,
        "hash": e.hash,
    }


CSV_COLUMNS = (
    "seq",
    "at",
    "partner",
    "partner_id",
    "run",
    "local_run",
    "task",
    "output",
    "kind",
    "bytes",
    "sha256",
    "approved_by",
    "delivered",
    "hash",
)


class Ledger:
    """The egress ledger of this site."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, release: Release) -> dict[str, Any]:
        """Write the entry for ``release`` (the bytes may leave once this returns)."""
        with self.db.write() as s:
            if s.get_bind().dialect.name == "postgresql":  # one appender at a time
                s.execute(text("SELECT pg_advisory_xact_lock(7172727)"))
            last = s.execute(
                select(EgressEntry.seq, EgressEntry.hash).order_by(EgressEntry.seq.desc()).limit(1)
            ).first()
            values: dict[str, Any] = {
                "seq": (last.seq + 1) if last else 1,
                "at": utcnow().replace(microsecond=0),
                "partner": release.partner,
                "partner_id": release.partner_id,
                "run": release.run,
                "local_run": release.local_run,
                "task": release.task,
                "output": release.output,
                "kind": release.kind,
                "bytes": len(release.data),
                "sha256": hashlib.sha256(release.data).hexdigest(),
                "policy": json.dumps(release.policy, sort_keys=True),
                "approved_by": release.approved_by,
                "prev_hash": last.hash if last else GENESIS,
            }
            values["hash"] = _entry_hash(values)
            entry = EgressEntry(**values, delivered=False)
            s.add(entry)
            s.flush()
            return entry_public(entry)

    def delivered(self, seq: int) -> None:
        with self.db.write() as s:
            s.execute(update(EgressEntry).where(EgressEntry.seq == seq).values(delivered=True))

    def find(self, run: str, output: str) -> dict[str, Any] | None:
        """The entry of an output already released for ``run`` (a resend uses it)."""
        with self.db.read() as s:
            e = s.scalars(
                select(EgressEntry)
                .where(EgressEntry.run == run, EgressEntry.output == output)
                .order_by(EgressEntry.seq.desc())
            ).first()
            return entry_public(e) if e else None

    def bytes_of_run(self, run: str) -> int:
        with self.db.read() as s:
            return int(
                s.scalar(
                    select(func.coalesce(func.sum(EgressEntry.bytes), 0)).where(
                        EgressEntry.run == run
                    )
                )
                or 0
            )

    def entries(
        self,
        *,
        partner: str | None = None,
        run: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        stmt = select(EgressEntry).order_by(EgressEntry.seq)
        if partner:
            stmt = stmt.where(
                (EgressEntry.partner == partner) | (EgressEntry.partner_id == partner)
            )
        if run:
            stmt = stmt.where((EgressEntry.run == run) | (EgressEntry.local_run == run))
        if since:
            stmt = stmt.where(EgressEntry.at >= since)
        if until:
            stmt = stmt.where(EgressEntry.at < until)
        if limit:
            stmt = stmt.limit(limit)
        with self.db.read() as s:
            return [entry_public(e) for e in s.scalars(stmt)]

    def verify(self) -> tuple[int, str]:
        """Check the whole chain: (entries checked, "" or what is wrong at the first break)."""
        previous, count = GENESIS, 0
        with self.db.read() as s:
            for e in s.scalars(select(EgressEntry).order_by(EgressEntry.seq)).yield_per(1000):
                count += 1
                values = {k: getattr(e, k) for k in _FIELDS}
                if e.seq != count:
                    return count, f"entry {count} is missing (found {e.seq} next)"
                if e.prev_hash != previous:
                    return count, f"entry {e.seq} does not follow the one before"
                if _entry_hash(values) != e.hash:
                    return count, f"entry {e.seq} was changed after it was written"
                previous = e.hash
        return count, ""


def as_csv(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The entries as CSV text, a header line first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([entry[c] for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
