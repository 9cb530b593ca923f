"""The problem document: how both services answer a request they refuse outside the protocol.

Protocol refusals are signed REJECT envelopes; everything else (a body that is not an
envelope, a missing token, an unknown settlement, a database outage) is an RFC 9457
``application/problem+json`` document with a machine-readable ``code``. :class:`Problem` is
its one schema: every error response in both services' OpenAPI documents refers to it, and a
client can parse any of them with it (see ``docs/openapi.md``).
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROBLEM_MEDIA_TYPE", "Problem"]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem document with a machine-readable ``code``.

    The five members below are always present. A response may add extension members where
    they help (a settlement's ``settlement_id``, ``intent_id``, ``state``; the
    ``settlement_ids`` an ambiguous intent id names; a readiness report's ``checks``):
    clients must ignore members they do not know, as RFC 9457 says.
    """

    model_config = ConfigDict(
        extra="allow",
        title="Problem",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://pact.dev/problems/insufficient-escrow",
                    "title": "Escrow could not be locked",
                    "status": 402,
                    "detail": "0.00008 needed, 0.00002 available",
                    "code": "INSUFFICIENT_ESCROW",
                    "settlement_id": "st_01kb0ybq0g7m4n6p8r0s2t4v6w",
                }
            ]
        },
    )

    type: str = Field(
        description="A URI naming the problem type, derived from `code` (it identifies the "
        "kind of problem and need not be dereferenceable)."
    )
    title: str = Field(description="A short summary of the problem type.")
    status: int = Field(ge=400, le=599, description="The HTTP status code of this response.")
    detail: str = Field(description="What went wrong with this request, for people.")
    code: str = Field(
        description="What went wrong, for programs: a pact/1.0 failure code "
        "(`pact_schema.FailureCode`, e.g. `INSUFFICIENT_ESCROW`, `PRICE_MISMATCH`) or a "
        "transport code of the service (e.g. `UNAUTHORIZED`, `NOT_FOUND`, "
        "`ENVELOPE_BAD_SIGNATURE`, `DATABASE_UNAVAILABLE`): each service's README lists "
        "its codes."
    )
