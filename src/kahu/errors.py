"""Kahu's exception tree.

::

    KahuError
    ├── InvalidInput              the caller sent something we refuse (HTTP 400 / DIMSE failure)
    │   ├── InvalidUID            a UID that breaks PS3.5 9.1 (never reaches a path)
    │   ├── InvalidDicom          not DICOM, truncated, or missing required attributes
    │   ├── UnsafeArchive         zip with traversal, absolute paths or bomb-like ratios
    │   ├── InvalidWorkflow       a workflow definition that cannot run (cycle, unknown input)
    │   ├── InvalidParameters     launch parameters that break the workflow's schema (HTTP 422)
    │   └── PayloadTooLarge       a request body over its limit (HTTP 413)
    ├── NotFound                  no such series, node, user, token (HTTP 404)
    ├── Conflict                  already exists / would overwrite (HTTP 409)
    ├── AuthenticationFailed      no or bad credentials (HTTP 401)
    ├── PermissionDenied          authenticated but not allowed (HTTP 403)
    └── StorageError              a write to the blob store or catalog failed (HTTP 500)
"""

from __future__ import annotations


class KahuError(Exception):
    """Base class of every error Kahu raises on purpose; ``http_status`` is how the API
    answers it (and what the audit log records for a refused action)."""

    http_status = 500


class InvalidInput(KahuError):
    http_status = 400


class InvalidUID(InvalidInput):
    pass


class InvalidDicom(InvalidInput):
    pass


class UnsafeArchive(InvalidInput):
    pass


class InvalidWorkflow(InvalidInput):
    pass


class PayloadTooLarge(InvalidInput):
    """The request body exceeds the configured limit (HTTP 413)."""

    http_status = 413


class InvalidParameters(InvalidInput):
    """Parameters that break a workflow's JSON Schema; ``errors`` name each field."""

    http_status = 422

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__(
            "invalid parameters: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        )


class NotFound(KahuError):
    http_status = 404


class Conflict(KahuError):
    http_status = 409


class AuthenticationFailed(KahuError):
    http_status = 401


class PermissionDenied(KahuError):
    http_status = 403


class StorageError(KahuError):
    pass


class EgressRefused(PermissionDenied):
    """The egress gate refused to let an output leave the site (the reason says why)."""
