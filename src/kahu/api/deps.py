"""FastAPI dependencies: the Kahu instance and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kahu.auth.policy import SeriesScope, read_scope
from kahu.auth.users import UserPublic
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, PermissionDenied

_bearer = HTTPBearer(auto_error=False, description="API token from `kahu tokens create`")


def get_kahu(request: Request) -> Kahu:
    kahu: Kahu = request.app.state.kahu
    return kahu


KahuDep = Annotated[Kahu, Depends(get_kahu)]


def current_user(
    kahu: KahuDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserPublic:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("authentication required: send 'Authorization: Bearer <token>'")
    return kahu.accounts.authenticate_token(credentials.credentials)


CurrentUser = Annotated[UserPublic, Depends(current_user)]


def admin_user(user: CurrentUser) -> UserPublic:
    if not user.is_admin:
        raise PermissionDenied("administrators only")
    return user


AdminUser = Annotated[UserPublic, Depends(admin_user)]


def read_scope_of(kahu: KahuDep, user: CurrentUser) -> SeriesScope:
    return read_scope(kahu.projects, user)


#: The series the caller may read (:class:`kahu.auth.policy.SeriesScope`).
Scope = Annotated[SeriesScope, Depends(read_scope_of)]
