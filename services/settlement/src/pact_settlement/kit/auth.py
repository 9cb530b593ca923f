"""Bearer tokens: the provider's (create + read) and the operators' (deposits + read).

Both configured tokens are compared on every request with ``hmac.compare_digest`` so the
time taken does not reveal which one (or how much of one) matched.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import ForbiddenError, UnauthorizedError
from pact_settlement.runtime import runtime_of

__all__ = ["AdminPrincipal", "AnyPrincipal", "Principal", "ProviderPrincipal", "Role"]

# One OpenAPI security scheme per token, so the document says which token each route takes:
# a route that takes either lists both (OpenAPI reads a list of requirements as "any of").
# Both read the same Authorization header; the token itself decides the role (below).
_provider_token = HTTPBearer(
    auto_error=False,
    scheme_name="providerToken",
    description="The provider's token (`PACT_SETTLEMENT_API_TOKEN`): creates settlements, "
    "records COMMIT, REVEAL and abort, reads.",
)
_admin_token = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The operators' token (`PACT_SETTLEMENT_ADMIN_TOKEN`): deposits, top-ups, "
    "payment profiles, reads.",
)
Credentials = HTTPAuthorizationCredentials | None


class Role(StrEnum):
    PROVIDER = "provider"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role

    @property
    def actor(self) -> str:
        return self.role.value


def _match(presented: str, settings: SettlementSettings) -> Role | None:
    assert settings.api_token is not None
    assert settings.admin_token is not None
    given = presented.encode("utf-8")
    is_provider = hmac.compare_digest(given, settings.api_token.get_secret_value().encode("utf-8"))
    is_admin = hmac.compare_digest(given, settings.admin_token.get_secret_value().encode("utf-8"))
    if is_provider:
        return Role.PROVIDER
    if is_admin:
        return Role.ADMIN
    return None


def _authenticate(request: Request, credentials: Credentials, *roles: Role) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise UnauthorizedError()
    role = _match(credentials.credentials, runtime_of(request.app).settings)
    if role is None:
        raise UnauthorizedError("the bearer token is not valid")
    if role not in roles:
        wanted = " or the ".join(r.value for r in roles)
        raise ForbiddenError(f"this route takes the {wanted} token; this is the {role.value} token")
    return Principal(role)


async def _provider(
    request: Request, credentials: Annotated[Credentials, Depends(_provider_token)]
) -> Principal:
    return _authenticate(request, credentials, Role.PROVIDER)


async def _admin(
    request: Request, credentials: Annotated[Credentials, Depends(_admin_token)]
) -> Principal:
    return _authenticate(request, credentials, Role.ADMIN)


async def _either(
    request: Request,
    credentials: Annotated[Credentials, Depends(_provider_token)],
    _same_header: Annotated[Credentials, Depends(_admin_token)],
) -> Principal:
    return _authenticate(request, credentials, Role.PROVIDER, Role.ADMIN)


ProviderPrincipal = Annotated[Principal, Depends(_provider)]
AdminPrincipal = Annotated[Principal, Depends(_admin)]
AnyPrincipal = Annotated[Principal, Depends(_either)]
