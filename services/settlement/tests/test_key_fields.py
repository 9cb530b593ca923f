"""Every settlement API model that carries an agent's key types it as the one base58 key type,
``pact_schema.keys.PublicKeyB58``."""

from __future__ import annotations

import pytest
from pact_schema.keys import PublicKeyB58
from pact_settlement.accounts.schemas import (
    AccountRead,
    DepositRead,
    PaymentProfileRead,
    TopUpRead,
)
from pact_settlement.settlements.schemas import SettlementRead
from pydantic import BaseModel, TypeAdapter

KEY = TypeAdapter(PublicKeyB58).json_schema()


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (AccountRead, "agent_id"),
        (DepositRead, "agent_id"),
        (PaymentProfileRead, "agent_id"),
        (TopUpRead, "agent_id"),
        (SettlementRead, "buyer"),
        (SettlementRead, "seller"),
    ],
)
def test_key_fields_are_public_key_b58(model: type[BaseModel], field: str) -> None:
    schema = model.model_json_schema(mode="serialization")["properties"][field]
    assert {k: schema.get(k) for k in KEY} == KEY
