"""Schemas of the health routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["WhoAmI"]


class WhoAmI(BaseModel):
    role: Literal["provider", "admin"] = Field(
        description="`provider`: PACT_SETTLEMENT_API_TOKEN; `admin`: PACT_SETTLEMENT_ADMIN_TOKEN."
    )
