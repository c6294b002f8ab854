"""The table of installed models (their files are in ``<home>/models/<name>/<version>/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kahu.catalog.tables import Base, UTCDateTime, utcnow


class InstalledModel(Base):
    """One installed version of a model: its manifest as installed, its digest, and the
    projects that may use it (None: every project)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    format: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    readme: Mapped[str] = mapped_column(Text, default="")
    projects: Mapped[list[str] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(512), default="")
    installed_by: Mapped[str] = mapped_column(String(128), default="")
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
