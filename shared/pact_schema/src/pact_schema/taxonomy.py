"""Our failure codes in the reference ecosystem's vocabularies.

Two tables, documented in the settlement README ("Failure codes for reference tooling"):

* :func:`reference_failure_code`: the code a RECEIPT's ``failure_code`` carries for a
  reference v1 buyer (the reference protocol §11.3/§11.4, see docs/protocol.md): the
  reference's code where one means the same thing, else ours unchanged (the reference types
  the field ``FailureCode | string``). The RECEIPT keeps ours in ``settlement_failure_code``
  as well.
* :func:`v4_failure`: the ``failure_event`` of a ``pact-transcript/4.0`` export: a PACT-1xx…5xx
  code of the v4 failure taxonomy with its stage, fault domain and terminality. Every ending of
  a settlement is final here (an intent id is settled once per buyer), so all are ``terminal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from pact_schema.codes import FailureCode

__all__ = [
    "REFERENCE_RECEIPT_CODES",
    "V4_FAILURES",
    "V4Failure",
    "reference_failure_code",
    "v4_failure",
]

#: Ours → the reference v1 code, where they differ in name only.
REFERENCE_RECEIPT_CODES = MappingProxyType(
    {
        FailureCode.INSUFFICIENT_ESCROW.value: FailureCode.FAILED_ESCROW.value,
    }
)


def reference_failure_code(code: str) -> str:
    """The reference v1 ``FailureCode`` for one of ours, or ours when no reference code fits."""
    return REFERENCE_RECEIPT_CODES.get(code, code)


@dataclass(frozen=True, slots=True)
class V4Failure:
    """A v4 failure-taxonomy classification (``FAILURE_TAXONOMY.md`` of the reference)."""

    code: str
    name: str
    stage: str
    fault_domain: str
    terminality: str = "terminal"


_PROVIDER = "PROVIDER_AT_FAULT"

V4_FAILURES = MappingProxyType(
    {
        FailureCode.BOND_INSUFFICIENT.value: V4Failure(
            "PACT-113", "POLICY_BOND_INSUFFICIENT", "commitment", "policy"
        ),
        FailureCode.MISSING_REQUIRED_CREDENTIALS.value: V4Failure(
            "PACT-203", "IDENTITY_CREDENTIAL_MISSING", "admission", "identity"
        ),
        FailureCode.SETTLEMENT_FAILED.value: V4Failure(
            "PACT-400", "SETTLEMENT_FAILED", "settlement", "settlement"
        ),
        FailureCode.FAILED_ESCROW.value: V4Failure(
            "PACT-401", "SETTLEMENT_RAIL_ERROR", "settlement", "settlement"
        ),
        FailureCode.COMMIT_WINDOW_MISSED.value: V4Failure(
            "PACT-402", "SETTLEMENT_COMMIT_FAILED", "commitment", "settlement"
        ),
        FailureCode.FAILED_PROOF.value: V4Failure(
            "PACT-403", "SETTLEMENT_REVEAL_FAILED", "reveal", _PROVIDER
        ),
        FailureCode.INSUFFICIENT_ESCROW.value: V4Failure(
            "PACT-404", "SETTLEMENT_INSUFFICIENT_FUNDS", "settlement", "settlement"
        ),
        FailureCode.DELIVERY_DEADLINE_MISSED.value: V4Failure(
            "PACT-405", "SETTLEMENT_TIMEOUT", "fulfillment", _PROVIDER
        ),
        FailureCode.DELIVERY_WINDOW_TOO_SHORT.value: V4Failure(
            "PACT-405", "SETTLEMENT_TIMEOUT", "fulfillment", "settlement"
        ),
        FailureCode.DURATION_EXCEEDED.value: V4Failure(
            "PACT-405", "SETTLEMENT_TIMEOUT", "settlement", "settlement"
        ),
        FailureCode.LATENCY_BREACH.value: V4Failure(
            "PACT-407", "SETTLEMENT_SLA_VIOLATION", "fulfillment", _PROVIDER
        ),
        FailureCode.FULFILMENT_FAILED.value: V4Failure(
            "PACT-500", "DEPENDENCY_FAILED", "fulfillment", _PROVIDER
        ),
    }
)
_GENERIC = V4_FAILURES[FailureCode.SETTLEMENT_FAILED.value]


def v4_failure(code: str | None) -> V4Failure:
    """The v4 classification of a settlement's failure code (PACT-400 when none fits)."""
    return V4_FAILURES.get(code or "", _GENERIC)
