"""Rails API: which rails a settlement may use, and their limits."""

from __future__ import annotations

from fastapi import APIRouter

from pact_settlement.kit.auth import AnyPrincipal
from pact_settlement.kit.deps import Settings
from pact_settlement.kit.openapi import AUTH_ERRORS
from pact_settlement.rails.schemas import RailList
from pact_settlement.rails.service import list_rails

router = APIRouter(prefix="/v1/rails", tags=["rails"])


@router.get(
    "",
    response_model=RailList,
    summary="Enabled rails, the default, and each rail's currency, minimum and bond support",
    responses={**AUTH_ERRORS},
)
async def get_rails(principal: AnyPrincipal, settings: Settings) -> RailList:
    return list_rails(settings)
