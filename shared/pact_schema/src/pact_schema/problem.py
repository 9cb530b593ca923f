"""The problem document: how both services answer a request they refuse outside the protocol.

Protocol refusals are signed REJECT envelopes; everything else (a body that is not an
envelope, a missing token, an unknown settlement, a database outage) is an RFC 9457
``application/problem+json`` document with a machine-readable ``code``. :class:`Problem` is
its one schema: every error response in both services' OpenAPI documents refers to it, and a
client can parse any of them with it (see ``docs/openapi.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROBLEM_MEDIA_TYPE", "Problem", "problem_document", "problem_type"]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


def problem_type(base: str, code: str) -> str:
    """The ``type`` URI of a code under a service's ``base``: ``INSUFFICIENT_ESCROW`` →
    ``{base}insufficient-escrow``."""
    return base + code.lower().replace("_", "-")


def problem_document(
    status: int,
    code: str,
    detail: str,
    *,
    type_base: str,
    title: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A problem document: the five members of :class:`Problem` (``title`` by default the
    status's reason phrase), then the ``extra`` members. Every problem body both services
    send or document is made here."""
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    return {
        "type": problem_type(type_base, code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }


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
