"""Every table of Kahu in one metadata: the catalog's own and those its owners declare next to
their code (:mod:`kahu.auth.tables`, :mod:`kahu.dimse.tables`, :mod:`kahu.flow.tables`,
:mod:`kahu.models.tables`, :mod:`kahu.federation.tables`, :class:`kahu.audit.AuditEvent`).
Alembic compares against it; the migrations must produce exactly these tables
(``tests/contracts/test_migrations.py``, on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import MetaData

import kahu.audit
import kahu.auth.tables
import kahu.dimse.tables
import kahu.federation.tables
import kahu.flow.tables
import kahu.models.tables
from kahu.catalog.tables import Base

#: the owners' table modules, imported for the tables they register
OWNERS = (
    kahu.audit,
    kahu.auth.tables,
    kahu.dimse.tables,
    kahu.federation.tables,
    kahu.flow.tables,
    kahu.models.tables,
)

metadata: MetaData = Base.metadata
