"""Request and response bodies of the REST API (``XxxCreate`` / ``XxxPublic``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from kahu.auth.users import TokenPublic, UserPublic

__all__ = ["TokenPublic", "UserPublic"]  # the records the routes answer with, one of each


class SeriesPublic(BaseModel):
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    modality: str | None
    series_description: str | None
    instance_count: int
    size_bytes: int
    received_at: datetime
    updated_at: datetime
    datasets: list[str]


class SeriesPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SeriesPublic]


class InstancePublic(BaseModel):
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    size_bytes: int
    number_of_frames: int | None
    rows: int | None
    columns: int | None


class DatasetPublic(BaseModel):
    name: str
    kind: Literal["explicit", "query", "frozen"]
    origin: str
    description: str
    query: str | None
    frozen_at: datetime | None
    created_at: datetime
    series_count: int
    project: str


class FileReportPublic(BaseModel):
    path: str
    status: str
    reason: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None


class UploadReport(BaseModel):
    stored: int
    duplicate: int
    rejected: int
    files: list[FileReportPublic]


class StatsPublic(BaseModel):
    patients: int
    studies: int
    series: int
    instances: int
    size_bytes: int


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=12, max_length=1024)
    is_admin: bool = False


class TokenCreate(BaseModel):
    name: str = Field(default="", max_length=128)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


@dataclass(frozen=True, slots=True)
class TokenCreated(TokenPublic):
    """A new token: its public record and the secret, shown only this once."""

    token: str

    @classmethod
    def of(cls, secret: str, token: TokenPublic) -> TokenCreated:
        return cls(**dataclasses.asdict(token), token=secret)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    expires_in_days: float = Field(default=1.0, gt=0, le=365)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class NodeCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    ae_title: str = Field(min_length=1, max_length=16)
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(gt=0, lt=65536)
    description: str = ""
    projects: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=lambda: ["default"],
        max_length=100,
        description="projects whose series it may query, retrieve and receive",
    )


class NodePublic(NodeCreate):
    pass


class Document(BaseModel):
    series_instance_uid: str
    document: dict[str, Any]
