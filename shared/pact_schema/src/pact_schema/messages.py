"""pydantic models of every pact/1.0 message, with the reference SDK's rules.

Models are for *reading*: signatures are always checked over the raw dict as received
(see :mod:`pact_schema.envelope`). Unknown fields are kept (``extra="allow"``) because the
signature covers them; money fields are ``Decimal`` (finite, below ``MAX_AMOUNT``). Every
``intent_id`` is an :data:`~pact_schema.text.IntentId`, every agent key a
:data:`~pact_schema.keys.PublicKeyB58`, and every string of a message, at any depth and in
unknown fields too, storable text (no NUL, no lone surrogate): see :mod:`pact_schema.text`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from pact_schema.codes import FailureCode
from pact_schema.keys import PublicKeyB58
from pact_schema.money import MAX_AMOUNT, WireMoneyError, decimal_from_wire, decimal_to_wire
from pact_schema.text import IntentId, UnsafeTextError, check_storable

__all__ = [
    "PROTOCOL_VERSION",
    "Accept",
    "Ask",
    "Bid",
    "Commit",
    "Constraints",
    "Intent",
    "Message",
    "MessageValidationError",
    "Receipt",
    "Reject",
    "Reveal",
    "StreamChunk",
    "StreamStart",
    "StreamStop",
    "StreamVoucher",
    "message_to_wire",
    "parse_message",
]

PROTOCOL_VERSION = "pact/1.0"


_float_text = float.__repr__


_MAX_FLOAT = float(MAX_AMOUNT)  # 1e20 is exact as a double


def _wire_amount(value: object) -> Decimal:
    # Fast path for what JSON parsing gives for a price, a float in range: the Decimal of its
    # shortest round-trip text, exactly what decimal_from_wire returns for it.
    if type(value) is float and -_MAX_FLOAT < value < _MAX_FLOAT:
        return Decimal(_float_text(value))
    try:
        return decimal_from_wire(value)
    except WireMoneyError as exc:
        raise ValueError(str(exc)) from exc


def _wire_int(value: object) -> object:
    # JavaScript has one number type: 5.0 is the integer 5, but "5" and true are not numbers.
    if type(value) is int:  # the common case, first (bool is a subclass, never this type)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected an integer number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("expected an integer number")
        return int(value)
    return value


Amount = Annotated[Decimal, BeforeValidator(_wire_amount)]
PositiveAmount = Annotated[Amount, Field(gt=0)]
NonNegativeAmount = Annotated[Amount, Field(ge=0)]
WireInt = Annotated[int, BeforeValidator(_wire_int)]
NonNegativeInt = Annotated[WireInt, Field(ge=0)]
PositiveInt = Annotated[WireInt, Field(gt=0)]
SettlementMode = Literal["hash_reveal", "streaming"]
Unit = Literal["request", "ms", "byte", "custom"]


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=False)

    protocol_version: Literal["pact/1.0"]
    intent_id: IntentId

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        # Every string, known field or not, at any depth: what is refused here is never
        # stored, echoed in a reply or logged as a value.
        if isinstance(data, dict):
            try:
                check_storable(data)
            except UnsafeTextError as exc:
                raise ValueError(str(exc)) from exc
        return data

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class _Timed(_Base):
    sent_at_ms: NonNegativeInt
    expires_at_ms: NonNegativeInt

    @model_validator(mode="after")
    def _expires_after_sent(self) -> _Timed:
        if self.expires_at_ms <= self.sent_at_ms:
            raise ValueError("expires_at_ms must be greater than sent_at_ms")
        return self


class Constraints(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    latency_ms: NonNegativeInt
    freshness_sec: NonNegativeInt


class Intent(_Timed):
    type: Literal["INTENT"]
    intent: Annotated[str, Field(min_length=1, max_length=256)]
    scope: str | dict[str, Any]
    constraints: Constraints
    max_price: PositiveAmount
    settlement_mode: SettlementMode
    urgent: StrictBool | None = None


class _Quote(_Timed):
    price: PositiveAmount
    unit: Unit
    latency_ms: NonNegativeInt
    valid_for_ms: PositiveInt
    bond_required: NonNegativeAmount

    @model_validator(mode="after")
    def _firm_for_valid_for(self) -> _Quote:
        if self.expires_at_ms != self.sent_at_ms + self.valid_for_ms:
            raise ValueError("expires_at_ms must equal sent_at_ms + valid_for_ms")
        return self


class Ask(_Quote):
    type: Literal["ASK"]


class Bid(_Quote):
    type: Literal["BID"]
    bond_offered: NonNegativeAmount | None = None


class Accept(_Timed):
    type: Literal["ACCEPT"]
    agreed_price: PositiveAmount
    settlement_mode: SettlementMode
    proof_type: SettlementMode
    challenge_window_ms: NonNegativeInt
    delivery_deadline_ms: NonNegativeInt


class Reject(_Timed):
    type: Literal["REJECT"]
    reason: Annotated[str, Field(max_length=4096)]
    code: str | None = None


class Commit(_Timed):
    type: Literal["COMMIT"]
    commit_hash_hex: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class Reveal(_Timed):
    type: Literal["REVEAL"]
    payload_b64: str
    nonce_b64: str


class StreamStart(_Timed):
    """The buyer opens a stream: ``agreed_price`` is the budget, ``tick_ms`` the tick."""

    type: Literal["STREAM_START"]
    agreed_price: PositiveAmount
    tick_ms: PositiveInt


class StreamChunk(_Timed):
    """One chunk of a stream, signed by the seller; ``seq`` starts at 0 and increments."""

    type: Literal["STREAM_CHUNK"]
    chunk_b64: str
    seq: NonNegativeInt


class StreamStop(_Timed):
    """Either side ends the stream."""

    type: Literal["STREAM_STOP"]
    by: Literal["buyer", "seller"]
    reason: Annotated[str, Field(max_length=4096)]


class StreamVoucher(_Base):
    """Ours: the buyer's signed, cumulative promise to pay for a stream ("I owe up to
    ``ticks`` ticks, ``paid_amount`` in total, for this intent"). Each voucher replaces the
    previous one; the highest ``paid_amount`` is what settlement releases
    (docs/protocol.md, "Streaming")."""

    type: Literal["STREAM_VOUCHER"]
    buyer_agent_id: PublicKeyB58
    seller_agent_id: PublicKeyB58
    ticks: NonNegativeInt
    paid_amount: NonNegativeAmount
    seq: NonNegativeInt
    sent_at_ms: NonNegativeInt


class Receipt(_Base):
    """The reference v1 receipt (``receipt_id`` ``receipt-{intent_id}-{timestamp_ms}``;
    ``paid_amount``, ``ticks`` and ``chunks`` for streaming) as a signed message."""

    type: Literal["RECEIPT"]
    receipt_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    buyer_agent_id: PublicKeyB58
    seller_agent_id: PublicKeyB58
    agreed_price: PositiveAmount
    fulfilled: StrictBool
    latency_ms: NonNegativeInt | None = None
    failure_code: str | None = None
    paid_amount: NonNegativeAmount | None = None
    ticks: NonNegativeInt | None = None
    chunks: NonNegativeInt | None = None
    timestamp_ms: NonNegativeInt


Message = Annotated[
    Intent
    | Ask
    | Bid
    | Accept
    | Reject
    | Commit
    | Reveal
    | Receipt
    | StreamStart
    | StreamChunk
    | StreamStop
    | StreamVoucher,
    Field(discriminator="type"),
]
_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


class MessageValidationError(ValueError):
    """A message does not satisfy the pact/1.0 schema; ``code`` is the REJECT code to use."""

    def __init__(self, code: FailureCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where or 'message'}: {err['msg']}")
    return "; ".join(parts)


def parse_message(raw: object) -> Message:
    """Validate a wire message dict into its model.

    Raises :class:`MessageValidationError` with ``MISSING_EXPIRES_AT`` when a timed message
    lacks ``expires_at_ms``, else ``SCHEMA_VALIDATION_FAILED``.
    """
    try:
        return _MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] == "missing" and err["loc"][-1:] == ("expires_at_ms",):
                raise MessageValidationError(
                    FailureCode.MISSING_EXPIRES_AT, "expires_at_ms is mandatory"
                ) from exc
        raise MessageValidationError(FailureCode.SCHEMA_VALIDATION_FAILED, _describe(exc)) from exc


def _to_wire_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_to_wire(value)
    if isinstance(value, dict):
        return {k: _to_wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_wire_value(v) for v in value]
    return value


def message_to_wire(message: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a message: ``Decimal`` → JSON number, unset optionals dropped."""
    dumped = message.model_dump(mode="python", exclude_none=True)
    result = _to_wire_value(dumped)
    assert isinstance(result, dict)
    return result
