"""The tables of DICOM nodes and the projects each may reach."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kahu.catalog.tables import Base, UTCDateTime, utcnow


class DicomNode(Base):
    __tablename__ = "dicom_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NodeProject(Base):
    """A DICOM node may query and retrieve (and receive) the series of this project."""

    __tablename__ = "node_projects"

    node_pk: Mapped[int] = mapped_column(
        ForeignKey("dicom_nodes.id", ondelete="CASCADE"), primary_key=True
    )
    project_pk: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
