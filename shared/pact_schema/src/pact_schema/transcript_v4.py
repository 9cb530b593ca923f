"""``pact-transcript/4.0``: export a settlement transcript as a reference v4 transcript, and
verify any v4 transcript the way the reference replayer does.

The hashing rules are the reference tooling's (its replayer, and the published fixtures it
accepts), which differ from the prose of ``pact_transcript_v4.md`` in three places; we follow
the tooling, so reference auditors verify what we export:

* round 0's ``previous_round_hash`` is SHA-256 of the UTF-8 text ``"{intent_id}:{created_at_ms}"``;
* ``round_hash`` is SHA-256 of the canonical JSON of the round without ``round_hash`` (its
  ``content_summary`` included); ``final_hash`` is SHA-256 of the canonical JSON of the whole
  transcript without ``final_hash`` (``metadata`` and ``failure_event`` included);
* a round's ``signature`` is the Ed25519 signature over the 32 bytes of ``envelope_hash``, by
  ``public_key_b58``. A pact-envelope/1.0 signs the *message* hash, so ``envelope_hash`` (like
  ``message_hash``) is the envelope's ``message_hash_hex``: checkable with the envelope's own
  public key.

``failure_event.transcript_hash`` is SHA-256 of the canonical JSON of the transcript without
``failure_event`` and ``final_hash``; as in the reference replayer, a mismatch is a warning
(the published failure fixtures carry values no documented rule reproduces).

Export (:func:`export_v4`): the rounds are the negotiation envelopes settlement holds, in
protocol order: the provider's ASK (``agent_id`` ``seller``), the buyer's ACCEPT (``buyer``),
then the seller's signed abort and the buyer's challenges (REJECT envelopes). The INTENT and
earlier BIDs never reach settlement (the ASK carries the INTENT's type and scope, signed by the
provider), so round 0 is the ASK. The COMMIT, REVEAL and RECEIPT are not negotiation rounds:
they travel verbatim in ``metadata.settlement_envelopes``, under ``final_hash``. A refund,
slash or failure adds a ``failure_event`` with the v4 code of the settlement's failure code
(:func:`pact_schema.taxonomy.v4_failure`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pact_schema.canonical import CanonicalJSONError, canonical_json, sha256_hex
from pact_schema.commit import reveal_matches
from pact_schema.envelope import EnvelopeError, verify_envelope
from pact_schema.keys import KeyFormatError, verify_detached
from pact_schema.messages import MessageValidationError, parse_message
from pact_schema.taxonomy import v4_failure
from pact_schema.transcript import TranscriptCheck

__all__ = [
    "SOURCE_FORMAT",
    "V4_VERSION",
    "export_v4",
    "final_hash",
    "genesis_hash",
    "is_v4",
    "round_hash",
    "transcript_id",
    "verify_v4",
]

V4_VERSION = "pact-transcript/4.0"
SOURCE_FORMAT = "pact-settlement-transcript/1"
TERMINAL_STATES = frozenset({"released", "refunded", "slashed", "failed"})
FAILED_STATES = frozenset({"refunded", "slashed", "failed"})
#: Our transcript kinds that are negotiation rounds → (round_type, agent_id).
_ROUND_KINDS = {
    "quote": ("ASK", "seller"),
    "accept": ("ACCEPT", "buyer"),
    "abort": ("REJECT", "seller"),
    "challenge": ("REJECT", "buyer"),
}
_EVIDENCE_KINDS = ("commit", "reveal", "receipt")
_HEX64 = frozenset("0123456789abcdef")
_BAD_PROOF = v4_failure("FAILED_PROOF").code


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash_json(value: Any) -> str:
    return sha256_hex(canonical_json(value))


def genesis_hash(intent_id: str, created_at_ms: int) -> str:
    """Round 0's ``previous_round_hash``."""
    return _sha256_text(f"{intent_id}:{created_at_ms}")


def transcript_id(intent_id: str, created_at_ms: int) -> str:
    """``transcript-`` + SHA-256 of ``intent_id`` followed by ``created_at_ms`` (decimal)."""
    return "transcript-" + _sha256_text(f"{intent_id}{created_at_ms}")


def round_hash(round_: Mapping[str, Any]) -> str:
    return _hash_json({k: v for k, v in round_.items() if k != "round_hash"})


def final_hash(transcript: Mapping[str, Any]) -> str:
    return _hash_json({k: v for k, v in transcript.items() if k != "final_hash"})


def failure_transcript_hash(transcript: Mapping[str, Any]) -> str:
    return _hash_json(
        {k: v for k, v in transcript.items() if k not in ("final_hash", "failure_event")}
    )


def is_v4(document: Any) -> bool:
    return isinstance(document, dict) and document.get("transcript_version") == V4_VERSION


# --------------------------------------------------------------------------------- export


def _summary(round_type: str, message: Mapping[str, Any]) -> dict[str, Any]:
    keys: tuple[str, ...]
    if round_type == "ASK":
        keys = ("price", "bond_required", "round", "valid_for_ms")
    elif round_type == "ACCEPT":
        keys = ("agreed_price", "settlement_mode", "delivery_deadline_ms")
    else:
        keys = ("code",)
    summary = {k: message[k] for k in keys if k in message}
    if "agreed_price" in summary:
        summary["price"] = summary.pop("agreed_price")
    return summary


def _entries(document: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(document, Mapping) or document.get("format") != SOURCE_FORMAT:
        raise ValueError(
            f"expected a {SOURCE_FORMAT} transcript (GET /v1/settlements/ID/transcript)"
        )
    raw = document.get("envelopes")
    if not isinstance(raw, list):
        raise ValueError("the transcript has no 'envelopes' list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("envelope"), dict):
            raise ValueError("every transcript entry needs a 'kind' and an 'envelope' object")
        out.append((str(item.get("kind")), item["envelope"]))
    return out


def _hashed_objects(
    accept: Mapping[str, Any], ask: Mapping[str, Any], settlement: Mapping[str, Any], key: Any
) -> dict[str, dict[str, Any]]:
    """The policy, strategy and identity snapshot the three header hashes are taken over: what
    settlement knows of each (it never sees the buyer's own policy), kept in ``metadata`` so an
    auditor can recompute them."""
    return {
        "policy": {
            "source": "the buyer's signed ACCEPT terms",
            **{
                k: accept.get(k)
                for k in (
                    "settlement_mode",
                    "proof_type",
                    "challenge_window_ms",
                    "delivery_deadline_ms",
                )
            },
        },
        "strategy": {
            "source": "the provider's signed quote binding",
            **{
                k: ask.get(k)
                for k in ("round", "list_price", "price", "valid_for_ms", "min_delivery_window_ms")
                if k in ask
            },
        },
        "identity_snapshot": {
            "buyer_public_key_b58": settlement.get("buyer"),
            "seller_public_key_b58": settlement.get("seller"),
            "settlement_public_key_b58": key,
        },
    }


def export_v4(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pact-transcript/4.0`` view of a ``pact-settlement-transcript/1`` document.

    Deterministic: the same settlement transcript always gives the same v4 transcript.
    Raises ``ValueError`` when ``document`` is not a settlement transcript.
    """
    entries = _entries(document)
    settlement = document.get("settlement")
    if not isinstance(settlement, dict):
        raise ValueError("the transcript has no 'settlement' object")
    intent_id = document.get("intent_id")
    if not isinstance(intent_id, str) or not intent_id:
        raise ValueError("the transcript has no intent_id")
    order = list(_ROUND_KINDS)
    negotiation = sorted(
        ((kind, env) for kind, env in entries if kind in _ROUND_KINDS),
        key=lambda item: order.index(item[0]),
    )
    if not negotiation:
        raise ValueError("the transcript has no negotiation envelope (quote or accept)")
    empty: dict[str, Any] = {}
    ask: dict[str, Any] = next((e["message"] for k, e in negotiation if k == "quote"), empty)
    accept: dict[str, Any] = next((e["message"] for k, e in negotiation if k == "accept"), empty)

    rounds: list[dict[str, Any]] = []
    previous_time = 0
    for kind, envelope in negotiation:
        round_type, agent = _ROUND_KINDS[kind]
        message = envelope.get("message", {})
        signed_at = int(envelope["signed_at_ms"])
        # Non-decreasing times are part of the chain's validity; a party whose clock ran
        # behind the previous signer's is given the previous time (its own stays in the
        # signature).
        timestamp = max(signed_at, previous_time)
        previous_time = timestamp
        digest = str(envelope["message_hash_hex"]).lower()
        round_: dict[str, Any] = {
            "round_number": len(rounds),
            "round_type": round_type,
            "message_hash": digest,
            "envelope_hash": digest,
            "signature": {
                "signer_public_key_b58": envelope["signer_public_key_b58"],
                "signature_b58": envelope["signature_b58"],
                "signed_at_ms": signed_at,
                "scheme": "ed25519",
            },
            "timestamp_ms": timestamp,
            "previous_round_hash": "",
            "agent_id": agent,
            "public_key_b58": envelope["signer_public_key_b58"],
            "content_summary": _summary(round_type, message),
        }
        rounds.append(round_)
    created_at = rounds[0]["timestamp_ms"]
    previous = genesis_hash(intent_id, created_at)
    for round_ in rounds:
        round_["previous_round_hash"] = previous
        round_["round_hash"] = previous = round_hash(round_)

    key = document.get("settlement_public_key_b58")
    hashed = _hashed_objects(accept, ask, settlement, key)
    evidence: list[dict[str, Any]] = [
        {"kind": kind, "envelope": env} for kind, env in entries if kind in _EVIDENCE_KINDS
    ]
    state = str(settlement.get("state"))
    transcript: dict[str, Any] = {
        "transcript_version": V4_VERSION,
        "transcript_id": transcript_id(intent_id, created_at),
        "intent_id": intent_id,
        "intent_type": str(ask.get("intent") or "unspecified"),
        "created_at_ms": created_at,
        "policy_hash": _hash_json(hashed["policy"]),
        "strategy_hash": _hash_json(hashed["strategy"]),
        "identity_snapshot_hash": _hash_json(hashed["identity_snapshot"]),
        "rounds": rounds,
        "metadata": {
            "exported_from": SOURCE_FORMAT,
            "settlement": {
                k: settlement.get(k)
                for k in ("id", "state", "rail", "amount", "bond", "bond_locked", "failure_code")
            },
            "settlement_public_key_b58": key,
            "hashed": hashed,
            "settlement_envelopes": evidence,
            "omitted_envelopes": list(document.get("omitted") or []),
        },
    }
    if state in FAILED_STATES:
        failure = v4_failure(settlement.get("failure_code"))
        receipts = [ev["envelope"] for ev in evidence if ev["kind"] == "receipt"]
        receipt: dict[str, Any] | None = receipts[0] if receipts else None
        refs = [
            transcript["transcript_id"],
            rounds[-1]["round_hash"],
            f"settlement:{settlement.get('id')}",
        ]
        when = rounds[-1]["timestamp_ms"]
        if receipt is not None:
            refs.append(str(receipt["message_hash_hex"]).lower())
            when = max(when, int(receipt["message"].get("timestamp_ms", when)))
        transcript["failure_event"] = {
            "code": failure.code,
            "stage": failure.stage,
            "fault_domain": failure.fault_domain,
            "terminality": failure.terminality,
            "evidence_refs": refs,
            "timestamp": when,
            "transcript_hash": failure_transcript_hash(transcript),
        }
    if state in TERMINAL_STATES:
        transcript["final_hash"] = final_hash(transcript)
    return transcript


# --------------------------------------------------------------------------------- verify


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _signature_holds(round_: Mapping[str, Any]) -> bool:
    signature = round_.get("signature")
    key = round_.get("public_key_b58")
    digest = round_.get("envelope_hash")
    if not isinstance(signature, dict) or not isinstance(key, str) or not _is_hex64(digest):
        return False
    if signature.get("scheme", "ed25519") != "ed25519":
        return False
    if signature.get("signer_public_key_b58") != key:
        return False
    sig = signature.get("signature_b58")
    if not isinstance(sig, str):
        return False
    try:
        return verify_detached(key, sig, bytes.fromhex(str(digest)))
    except (KeyFormatError, ValueError):
        return False


def _check_rounds(transcript: Mapping[str, Any], check: TranscriptCheck) -> bool:
    rounds = transcript.get("rounds")
    if not isinstance(rounds, list) or not rounds:
        check.record(False, "the transcript has no rounds")
        return False
    if not all(isinstance(r, dict) for r in rounds):
        check.record(False, "every round must be an object")
        return False
    for i, round_ in enumerate(rounds):
        if round_.get("round_number") != i:
            check.record(False, f"round {i}: round_number is {round_.get('round_number')!r}")
            return False
    times = [r.get("timestamp_ms") for r in rounds]
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
        check.record(False, "every round needs an integer timestamp_ms")
        return False
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            check.record(False, f"round {i}: timestamp_ms goes back in time")
            return False
    intent_id, created = transcript.get("intent_id"), transcript.get("created_at_ms")
    previous = genesis_hash(str(intent_id), created) if isinstance(created, int) else None
    for i, round_ in enumerate(rounds):
        label = f"round {i} {round_.get('round_type')}"
        if round_.get("previous_round_hash") != previous:
            check.record(False, f"{label}: hash chain broken (previous_round_hash)")
            return False
        try:
            computed = round_hash(round_)
        except CanonicalJSONError as exc:
            check.record(False, f"{label}: not canonical JSON: {exc}")
            return False
        stated = round_.get("round_hash")
        if stated is not None and stated != computed:
            check.record(False, f"{label}: round_hash does not match the round")
            return False
        if not _signature_holds(round_):
            check.record(False, f"{label}: signature does not verify over envelope_hash")
            return False
        check.record(
            True,
            f"{label} by {round_.get('agent_id')} ({round_.get('public_key_b58')}): "
            "signature and chain ok",
        )
        previous = stated or computed
    return True


def _check_header(transcript: Mapping[str, Any], check: TranscriptCheck) -> None:
    """Schema-level deviations the reference replayer tolerates: warnings, not failures."""
    for name in ("policy_hash", "strategy_hash", "identity_snapshot_hash"):
        if not _is_hex64(transcript.get(name)):
            check.record(True, f"warning: {name} is not a SHA-256 hex digest")
    tid = transcript.get("transcript_id")
    if not (isinstance(tid, str) and tid.startswith("transcript-") and _is_hex64(tid[11:])):
        check.record(True, "warning: transcript_id is not transcript-<sha256 hex>")


def _check_metadata(
    transcript: Mapping[str, Any], check: TranscriptCheck, settlement_key: str | None
) -> None:
    """What our export adds (absent from other producers' transcripts): the header hashes'
    objects and the settlement envelopes, each re-verified."""
    metadata = transcript.get("metadata")
    if not isinstance(metadata, dict):
        return
    hashed = metadata.get("hashed")
    if isinstance(hashed, dict):
        for name in ("policy", "strategy", "identity_snapshot"):
            if name in hashed:
                holds = _hash_json(hashed[name]) == transcript.get(f"{name}_hash")
                check.record(
                    holds,
                    f"{name}_hash {'matches' if holds else 'does NOT match'} "
                    f"metadata.hashed.{name}",
                )
    evidence = metadata.get("settlement_envelopes")
    if not isinstance(evidence, list):
        return
    key = settlement_key or metadata.get("settlement_public_key_b58")
    commits: list[Mapping[str, Any]] = []
    reveals: list[Mapping[str, Any]] = []
    for item in evidence:
        kind = item.get("kind") if isinstance(item, dict) else None
        try:
            verified = verify_envelope(item.get("envelope") if isinstance(item, dict) else None)
            message = parse_message(verified.message_raw)
        except (EnvelopeError, MessageValidationError) as exc:
            check.record(False, f"settlement envelope {kind}: {exc}")
            continue
        if message.intent_id != transcript.get("intent_id"):
            check.record(False, f"settlement envelope {kind} is for another intent")
            continue
        if message.type == "RECEIPT" and key is not None and verified.signer != key:
            check.record(False, f"RECEIPT signed by {verified.signer}, not {key}")
            continue
        if message.type == "COMMIT":
            commits.append(verified.message_raw)
        if message.type == "REVEAL":
            reveals.append(verified.message_raw)
        check.record(True, f"settlement envelope {message.type} signed by {verified.signer}")
    for reveal in reveals:
        holds = any(
            reveal_matches(
                str(c.get("commit_hash_hex", "")),
                str(reveal.get("payload_b64", "")),
                str(reveal.get("nonce_b64", "")),
            )
            for c in commits
        )
        failure = transcript.get("failure_event")
        if holds:
            check.record(True, "REVEAL matches the COMMIT")
        elif isinstance(failure, dict) and failure.get("code") == _BAD_PROOF:
            check.record(
                True, f"REVEAL matches no COMMIT: the failure_event's ({_BAD_PROOF}) evidence"
            )
        else:
            check.record(False, "REVEAL matches no COMMIT, and no failure_event says so")


def verify_v4(transcript: Any, *, settlement_key: str | None = None) -> TranscriptCheck:
    """Check a ``pact-transcript/4.0`` transcript: round sequence, non-decreasing times, the
    hash chain, every round's signature over its ``envelope_hash``, ``final_hash``; the
    ``failure_event`` hash (a warning when it differs, as in the reference replayer); and,
    for our exports, the settlement envelopes in ``metadata`` (``settlement_key`` pins the key
    RECEIPTs must be signed by)."""
    check = TranscriptCheck()
    if not is_v4(transcript):
        check.record(False, f"transcript_version is not {V4_VERSION!r}")
        return check
    if not _check_rounds(transcript, check):
        return check
    _check_header(transcript, check)
    try:
        if "final_hash" in transcript:
            holds = transcript["final_hash"] == final_hash(transcript)
            check.record(holds, "final_hash " + ("matches" if holds else "does NOT match"))
        failure = transcript.get("failure_event")
        if isinstance(failure, dict):
            code = failure.get("code")
            well_formed = isinstance(code, str) and len(code) == 8 and code[:5] == "PACT-"
            check.record(
                well_formed and str(code)[5:].isdigit() and str(code)[5] in "12345",
                f"failure_event {code} ({failure.get('stage')}, {failure.get('fault_domain')}, "
                f"{failure.get('terminality')})",
            )
            if failure.get("transcript_hash") != failure_transcript_hash(transcript):
                check.record(
                    True,
                    "warning: failure_event.transcript_hash differs from the "
                    "transcript before the failure",
                )
            if "final_hash" not in transcript:
                check.record(True, "warning: a failed transcript without final_hash")
    except CanonicalJSONError as exc:
        check.record(False, f"the transcript is not canonical JSON: {exc}")
        return check
    _check_metadata(transcript, check, settlement_key)
    return check
