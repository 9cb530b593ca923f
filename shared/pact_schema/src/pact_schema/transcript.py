"""Offline audit of a settlement transcript: every signature, hash, role, and the story they tell.

A transcript (``GET /v1/settlements/{ref}/transcript``, see ``docs/protocol.md``, "Transcripts")
lists the signed envelopes of one trade in protocol order::

    quote (ASK, seller) · accept (ACCEPT, buyer) · commit (COMMIT, seller)
    · abort (REJECT, seller) · reveal (REVEAL, seller) · challenge (REJECT, buyer)*
    · receipt (RECEIPT, settlement)

:func:`verify_transcript` checks each envelope on its own (hash, signature, pact/1.0 schema),
then the whole: one intent, each party signing only its own messages, every piece in its
place, and nothing missing that the outcome needs — a fulfilled RECEIPT needs the COMMIT and
the REVEAL that prove it, a REVEAL needs its COMMIT, a terminal settlement its RECEIPT. A
streaming settlement's checkpoints (the buyer's vouchers) must only go up, stay within the
agreed budget, and the RECEIPT's ``paid_amount`` must equal the highest of them. Each
missing or misplaced piece is named on a line of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from pact_schema.commit import reveal_matches
from pact_schema.envelope import EnvelopeError, verify_envelope
from pact_schema.messages import Message, MessageValidationError, StreamVoucher, parse_message
from pact_schema.quote import QUOTE_FIELD

__all__ = ["KIND_ORDER", "TranscriptCheck", "verify_transcript"]

KIND_ORDER: Final = (
    "quote",
    "accept",
    "commit",
    "abort",
    "reveal",
    "challenge",
    "checkpoint",
    "stop",
    "receipt",
)
"""The kinds of a settlement transcript, in protocol order."""
_RANK: Final = {kind: rank for rank, kind in enumerate(KIND_ORDER)}
_MESSAGE_TYPE: Final = {
    "quote": "ASK",
    "accept": "ACCEPT",
    "commit": "COMMIT",
    "abort": "REJECT",
    "reveal": "REVEAL",
    "challenge": "REJECT",
    "checkpoint": "STREAM_VOUCHER",
    "stop": "STREAM_STOP",
    "receipt": "RECEIPT",
}
_KIND_OF_TYPE: Final = {
    message_type: kind for kind, message_type in _MESSAGE_TYPE.items() if message_type != "REJECT"
}
_SINGLE: Final = ("quote", "accept", "commit", "abort", "reveal", "stop", "receipt")
_TERMINAL_STATES: Final = frozenset({"released", "refunded", "slashed", "failed"})
_ORDER_TEXT: Final = ", ".join(KIND_ORDER)


@dataclass
class TranscriptCheck:
    lines: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(good for good, _ in self.lines)

    def record(self, good: bool, text: str) -> None:
        self.lines.append((good, text))

    def fail(self, text: str) -> None:
        self.lines.append((False, text))


@dataclass(frozen=True)
class _Entry:
    index: int
    kind: str
    raw: dict[str, Any]
    message: Message
    signer: str

    @property
    def label(self) -> str:
        return f"#{self.index} {self.kind}"


def _entries(document: Any) -> list[tuple[str | None, Any]]:
    """(declared kind or None, envelope) for each listed envelope."""
    if isinstance(document, list):
        return [(None, e) for e in document]
    if isinstance(document, dict) and isinstance(document.get("envelopes"), list):
        out: list[tuple[str | None, Any]] = []
        for item in document["envelopes"]:
            if isinstance(item, dict) and "envelope" in item:
                kind = item.get("kind")
                out.append((kind if isinstance(kind, str) else repr(kind), item["envelope"]))
            else:
                out.append((None, item))
        return out
    raise ValueError("a transcript is a list of envelopes or an object with 'envelopes'")


def _omitted_reveals(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("omitted"), list):
        return []
    return [
        item
        for item in document["omitted"]
        if isinstance(item, dict) and item.get("kind") == "reveal"
    ]


def _settlement_state(document: Any) -> str | None:
    settlement = document.get("settlement") if isinstance(document, dict) else None
    state = settlement.get("state") if isinstance(settlement, dict) else None
    return state if isinstance(state, str) else None


def _infer_kind(message: Message, signer: str, seller: str | None, buyer: str | None) -> str:
    """The kind of an envelope listed without one (a bare list of envelopes)."""
    if message.type == "REJECT":
        if signer == seller:
            return "abort"
        if signer == buyer:
            return "challenge"
        return "REJECT by neither party"
    return _KIND_OF_TYPE.get(message.type, message.type)


def _verify_each(document: Any, check: TranscriptCheck, settlement_key: str | None) -> list[_Entry]:
    verified: list[tuple[int, str | None, dict[str, Any], Message, str]] = []
    for index, (declared, raw) in enumerate(_entries(document)):
        label = f"#{index} {declared or 'envelope'}"
        try:
            envelope = verify_envelope(raw)
            message = parse_message(envelope.message_raw)
        except (EnvelopeError, MessageValidationError) as exc:
            check.fail(f"{label}: {exc}")
            continue
        verified.append((index, declared, envelope.raw, message, envelope.signer))
    # Roles, for kinds that must be inferred: the seller signs the quote, the buyer the accept.
    seller = next((s for _, _, _, m, s in verified if m.type == "ASK"), None)
    buyer = next((s for _, _, _, m, s in verified if m.type == "ACCEPT"), None)
    entries: list[_Entry] = []
    for index, declared, raw, message, signer in verified:
        kind = declared or _infer_kind(message, signer, seller, buyer)
        entry = _Entry(index, kind, raw, message, signer)
        expected = _MESSAGE_TYPE.get(kind)
        if expected is None:
            check.fail(
                f"{entry.label}: a message of type {message.type} is not part of a settlement "
                f"transcript "
                f"(kinds: {_ORDER_TEXT})"
            )
            continue
        if message.type != expected:
            check.fail(f"{entry.label}: holds a {message.type}, a {kind} is a {expected}")
            continue
        if kind == "receipt" and settlement_key is not None and signer != settlement_key:
            check.fail(f"{entry.label}: RECEIPT signed by {signer}, not {settlement_key}")
            continue
        check.record(True, f"{entry.label}: {message.type} signed by {signer}")
        entries.append(entry)
    return entries


def _check_order(entries: list[_Entry], check: TranscriptCheck) -> None:
    latest: _Entry | None = None
    in_order = True
    for entry in entries:
        if latest is not None and _RANK[entry.kind] < _RANK[latest.kind]:
            check.fail(
                f"{entry.label} is out of order: it comes after {latest.label} "
                f"(protocol order: {_ORDER_TEXT})"
            )
            in_order = False
        elif latest is None or _RANK[entry.kind] >= _RANK[latest.kind]:
            latest = entry
    if in_order and entries:
        check.record(True, "envelopes are in protocol order")


def _check_roles(by_kind: dict[str, list[_Entry]], check: TranscriptCheck) -> None:
    quote = next(iter(by_kind["quote"]), None)
    accept = next(iter(by_kind["accept"]), None)
    seller = quote.signer if quote else None
    buyer = accept.signer if accept else None
    for kind, party, key in (
        ("commit", "seller", seller),
        ("abort", "seller", seller),
        ("reveal", "seller", seller),
        ("challenge", "buyer", buyer),
        ("checkpoint", "buyer", buyer),
    ):
        for entry in by_kind[kind]:
            if key is not None and entry.signer != key:
                check.fail(f"{entry.label}: signed by {entry.signer}, not the {party} {key}")
    for entry in by_kind["stop"]:
        if entry.signer not in {seller, buyer} - {None}:
            check.fail(f"{entry.label}: a STREAM_STOP signed by neither party")
    if quote is not None and accept is not None:
        carried = accept.raw["message"].get(QUOTE_FIELD)
        carried_hash = carried.get("message_hash_hex") if isinstance(carried, dict) else None
        quote_hash = str(quote.raw["message_hash_hex"]).lower()
        if isinstance(carried_hash, str) and carried_hash.lower() != quote_hash:
            check.fail(f"{accept.label}: carries another quote than {quote.label}")
    for receipt in by_kind["receipt"]:
        message = receipt.message
        for field_name, expected, who in (
            ("buyer_agent_id", buyer, "the ACCEPT's signer"),
            ("seller_agent_id", seller, "the quote's signer"),
        ):
            value = getattr(message, field_name)
            if expected is not None and value != expected:
                check.fail(f"{receipt.label}: {field_name} {value} is not {who} {expected}")
        if accept is not None:
            agreed = getattr(accept.message, "agreed_price", None)
            if agreed is not None and getattr(message, "agreed_price", None) != agreed:
                check.fail(f"{receipt.label}: agreed_price differs from the ACCEPT's")


def _check_proof(
    by_kind: dict[str, list[_Entry]], omitted: list[dict[str, Any]], check: TranscriptCheck
) -> bool | None:
    """Whether the REVEAL hashes to the COMMIT (None: no REVEAL, or none to check)."""
    commit = next(iter(by_kind["commit"]), None)
    reveal = next(iter(by_kind["reveal"]), None)
    committed = str(commit.raw["message"].get("commit_hash_hex", "")) if commit else ""
    if reveal is not None:
        if commit is None:
            check.fail(f"{reveal.label}: a REVEAL without the COMMIT it must match")
            return False
        message = reveal.raw["message"]
        payload_b64, nonce_b64 = message.get("payload_b64"), message.get("nonce_b64")
        holds = (
            isinstance(payload_b64, str)
            and isinstance(nonce_b64, str)
            and reveal_matches(committed, payload_b64, nonce_b64)
        )
        check.record(
            holds,
            f"{reveal.label} matches {commit.label} (sha256(payload_b64 + nonce_b64))"
            if holds
            else f"{reveal.label} does not hash to {commit.label}",
        )
        return holds
    for item in omitted:
        detail = item.get("detail") if isinstance(item.get("detail"), dict) else {}
        assert isinstance(detail, dict)
        recorded = detail.get("reveal_hash_hex")
        if commit is None:
            check.fail("an omitted REVEAL without the COMMIT it must match")
            return False
        holds = isinstance(recorded, str) and recorded.lower() == committed.lower()
        check.record(
            holds,
            f"REVEAL omitted for size ({detail.get('envelope_bytes', '?')} bytes): its recorded "
            f"sha256(payload_b64 + nonce_b64) {'matches' if holds else 'differs from'} "
            f"{commit.label} (the envelope itself cannot be re-checked offline)",
        )
        return holds
    return None


def _is_stream(by_kind: dict[str, list[_Entry]]) -> bool:
    accept = next(iter(by_kind["accept"]), None)
    return accept is not None and getattr(accept.message, "settlement_mode", None) == "streaming"


def _check_stream(by_kind: dict[str, list[_Entry]], check: TranscriptCheck) -> None:
    """Vouchers only go up and stay within the budget; the receipt pays the highest one."""
    accept = next(iter(by_kind["accept"]), None)
    budget = getattr(accept.message, "agreed_price", None) if accept else None
    highest: tuple[_Entry, Decimal] | None = None
    for entry in by_kind["checkpoint"]:
        if not isinstance(entry.message, StreamVoucher):
            continue
        amount = entry.message.paid_amount
        if budget is not None and amount > budget:
            check.fail(f"{entry.label}: a voucher of {amount} above the budget {budget}")
        if highest is not None and amount <= highest[1]:
            check.fail(f"{entry.label}: a voucher no higher than {highest[0].label}")
            continue
        highest = (entry, amount)
    receipt = next(iter(by_kind["receipt"]), None)
    if receipt is None:
        return
    paid = getattr(receipt.message, "paid_amount", None)
    owed = highest[1] if highest else Decimal(0)
    refunded = receipt.raw["message"].get("outcome") == "refunded"
    if refunded and paid == 0:
        check.record(True, f"{receipt.label}: nothing released, the budget refunded")
    elif paid == owed:
        what = highest[0].label if highest else "no voucher"
        check.record(True, f"{receipt.label}: released {paid}, the highest voucher ({what})")
    else:
        check.fail(f"{receipt.label}: released {paid}, but the highest voucher is {owed}")


def _check_completeness(
    document: Any,
    by_kind: dict[str, list[_Entry]],
    proof: bool | None,
    revealed: bool,
    check: TranscriptCheck,
) -> None:
    failures = sum(1 for good, _ in check.lines if not good)
    _name_missing_pieces(document, by_kind, proof, revealed, check)
    if sum(1 for good, _ in check.lines if not good) == failures:
        check.record(True, "nothing missing or misplaced for the outcome it records")


def _name_missing_pieces(
    document: Any,
    by_kind: dict[str, list[_Entry]],
    proof: bool | None,
    revealed: bool,
    check: TranscriptCheck,
) -> None:
    for kind in _SINGLE:
        for extra in by_kind[kind][1:]:
            check.fail(f"{extra.label}: a second {kind} (a transcript has one)")
    if not by_kind["quote"]:
        check.fail("missing: the quote (the provider-signed ASK the ACCEPT took)")
    if not by_kind["accept"]:
        check.fail("missing: the accept (the buyer-signed ACCEPT)")
    commit = by_kind["commit"][:1]
    abort = by_kind["abort"][:1]
    receipt = by_kind["receipt"][:1]
    if abort and revealed:
        check.fail(f"{abort[0].label}: the seller aborted, yet a REVEAL is recorded")
    for challenge in by_kind["challenge"]:
        if not revealed:
            check.fail(f"{challenge.label}: a challenge of a delivery that has no REVEAL")
    state = _settlement_state(document)
    if state in _TERMINAL_STATES and not receipt:
        check.fail(f"missing: the receipt (the settlement is {state})")
    if state is not None and state not in _TERMINAL_STATES and receipt:
        check.fail(f"{receipt[0].label}: a RECEIPT, yet the settlement is {state}")
    if not receipt:
        return
    message = receipt[0].message
    if _is_stream(by_kind):
        return
    if getattr(message, "fulfilled", False):
        if not commit:
            check.fail(f"missing: the commit that {receipt[0].label} (fulfilled) needs")
        if not revealed:
            check.fail(f"missing: the reveal that {receipt[0].label} (fulfilled) needs")
        elif proof is False:
            check.fail(f"{receipt[0].label} says fulfilled, but the REVEAL does not match")
        if abort:
            check.fail(f"{receipt[0].label} says fulfilled, but {abort[0].label} called it off")
    elif getattr(message, "failure_code", None) == "FAILED_PROOF" and not (commit and revealed):
        check.fail(f"missing: the commit and reveal whose mismatch {receipt[0].label} records")


def verify_transcript(document: Any, *, settlement_key: str | None = None) -> TranscriptCheck:
    """Check each envelope and that together they tell one complete story, in order.

    ``settlement_key`` pins the key RECEIPTs must be signed by; without it the transcript's own
    ``settlement_public_key_b58`` is used (and reported, so it can be compared out of band).
    Raises ``ValueError`` when ``document`` is not a transcript at all.
    """
    check = TranscriptCheck()
    if settlement_key is None and isinstance(document, dict):
        published = document.get("settlement_public_key_b58")
        settlement_key = published if isinstance(published, str) else None
    entries = _verify_each(document, check, settlement_key)
    intent_ids = sorted({e.message.intent_id for e in entries})
    if len(intent_ids) > 1:
        check.fail(f"envelopes name different intents: {intent_ids}")
    _check_order(entries, check)
    by_kind: dict[str, list[_Entry]] = {kind: [] for kind in KIND_ORDER}
    for entry in entries:
        by_kind[entry.kind].append(entry)
    _check_roles(by_kind, check)
    omitted = _omitted_reveals(document)
    proof = _check_proof(by_kind, omitted, check)
    revealed = bool(by_kind["reveal"] or omitted)
    if _is_stream(by_kind):
        _check_stream(by_kind, check)
    _check_completeness(document, by_kind, proof, revealed, check)
    if settlement_key is not None:
        check.record(True, f"settlement key used for RECEIPTs: {settlement_key}")
    return check
