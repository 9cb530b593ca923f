"""Stripe idempotency keys and PaymentIntent metadata, derived from our own ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

__all__ = ["as_dict", "id_of", "idempotency_key", "payment_metadata", "step_key"]

_STEPS: Final = frozenset({"lock", "capture", "cancel", "refund"})


def idempotency_key(settlement_id: str, step: str) -> str:
    """``settlement-{id}-{step}``: the outgoing Stripe idempotency key for one step."""
    if step not in _STEPS:
        raise ValueError(f"unknown Stripe step {step!r}; expected one of {sorted(_STEPS)}")
    if not settlement_id or not isinstance(settlement_id, str):
        raise ValueError("settlement_id must be a non-empty string")
    return f"settlement-{settlement_id}-{step}"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def step_key(settlement_id: str, step: str) -> str:
    return idempotency_key(settlement_id, step)


def payment_metadata(
    settlement_id: str, intent_id: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    md: dict[str, str] = {}
    for k, v in (extra or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError("Stripe metadata keys and values must be strings")
        md[k] = v
    md["settlement_id"] = settlement_id
    if intent_id is not None:
        md["intent_id"] = intent_id
    if len(md) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in md.items()):
        raise ValueError("Stripe metadata allows 50 keys, keys up to 40 and values up to 500 chars")
    return md


def as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return cast(dict[str, Any], to_dict())
    return dict(obj)


def id_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None
