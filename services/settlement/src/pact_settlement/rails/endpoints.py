"""Rails API: which rails a settlement may use, and their limits."""

from __future__ import annotations

from fastapi import APIRouter

from pact_settlement.kit import examples
from pact_settlement.kit.auth import AnyPrincipal
from pact_settlement.kit.deps import Settings
from pact_settlement.kit.openapi import ok, responses
from pact_settlement.rails import service
from pact_settlement.rails.schemas import RailList

router = APIRouter(prefix="/v1/rails", tags=["rails"])


@router.get(
    "",
    response_model=RailList,
    summary="Enabled rails, the default, and each rail's currency, minimum and bond support",
    responses=responses(success={200: ok("The rails", examples.rails())}),
)
async def list_rails(principal: AnyPrincipal, settings: Settings) -> RailList:
    return service.list_rails(settings)
