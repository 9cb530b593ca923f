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
from pact_settlement.kit.errors import Forbidden, Unauthorized

__all__ = ["AdminPrincipal", "AnyPrincipal", "Principal", "ProviderPrincipal", "Role"]

_bearer = HTTPBearer(auto_error=False, description="PACT_SETTLEMENT_API_TOKEN or ADMIN_TOKEN")


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


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized()
    role = _match(credentials.credentials, request.app.state.settings)
    if role is None:
        raise Unauthorized("the bearer token is not valid")
    return Principal(role)


def _require(*roles: Role):  # type: ignore[no-untyped-def]
    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(
                f"a {' or '.join(r.value for r in roles)} token is required; "
                f"this is a {principal.role.value} token"
            )
        return principal

    return dependency


ProviderPrincipal = Annotated[Principal, Depends(_require(Role.PROVIDER))]
AdminPrincipal = Annotated[Principal, Depends(_require(Role.ADMIN))]
AnyPrincipal = Annotated[Principal, Depends(_require(Role.PROVIDER, Role.ADMIN))]
