"""Offline audit of a settlement transcript: every signature, hash and cross-reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pact_schema.commit import reveal_matches
from pact_schema.envelope import EnvelopeError, verify_envelope
from pact_schema.messages import MessageValidationError, parse_message

__all__ = ["TranscriptCheck", "verify_transcript"]


@dataclass
class TranscriptCheck:
    lines: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(good for good, _ in self.lines)

    def record(self, good: bool, text: str) -> None:
        self.lines.append((good, text))


def _entries(document: Any) -> list[tuple[str, Any]]:
    if isinstance(document, list):
        return [("envelope", e) for e in document]
    if isinstance(document, dict) and isinstance(document.get("envelopes"), list):
        out = []
        for item in document["envelopes"]:
            if isinstance(item, dict) and "envelope" in item:
                out.append((str(item.get("kind", "envelope")), item["envelope"]))
            else:
                out.append(("envelope", item))
        return out
    raise ValueError("a transcript is a list of envelopes or an object with 'envelopes'")


def _hash_reveal_holds(commit: dict[str, Any], reveal: dict[str, Any]) -> bool:
    payload_b64, nonce_b64 = reveal.get("payload_b64"), reveal.get("nonce_b64")
    if not isinstance(payload_b64, str) or not isinstance(nonce_b64, str):
        return False
    return reveal_matches(str(commit.get("commit_hash_hex", "")), payload_b64, nonce_b64)


def verify_transcript(document: Any, *, settlement_key: str | None = None) -> TranscriptCheck:
    """Check each envelope and that they tell one consistent story.

    ``settlement_key`` pins the key RECEIPTs must be signed by; without it the transcript's own
    ``settlement_public_key_b58`` is used (and reported, so it can be compared out of band).
    """
    check = TranscriptCheck()
    if settlement_key is None and isinstance(document, dict):
        published = document.get("settlement_public_key_b58")
        settlement_key = published if isinstance(published, str) else None
    intent_ids: set[str] = set()
    commits: list[dict[str, Any]] = []
    reveals: list[dict[str, Any]] = []
    for index, (kind, raw) in enumerate(_entries(document)):
        label = f"#{index} {kind}"
        try:
            verified = verify_envelope(raw)
            message = parse_message(verified.message_raw)
        except (EnvelopeError, MessageValidationError) as exc:
            check.record(False, f"{label}: {exc}")
            continue
        intent_ids.add(message.intent_id)
        signer = verified.signer
        if message.type == "RECEIPT" and settlement_key is not None and signer != settlement_key:
            check.record(False, f"{label}: RECEIPT signed by {signer}, not {settlement_key}")
            continue
        if message.type == "COMMIT":
            commits.append(verified.message_raw)
        if message.type == "REVEAL":
            reveals.append(verified.message_raw)
        check.record(True, f"{label}: {message.type} signed by {signer}")
    if len(intent_ids) > 1:
        check.record(False, f"envelopes name different intents: {sorted(intent_ids)}")
    for reveal in reveals:
        holds = any(_hash_reveal_holds(commit, reveal) for commit in commits)
        check.record(
            holds,
            "REVEAL matches the COMMIT (sha256(payload_b64 + nonce_b64))"
            if holds
            else "REVEAL does not hash to any COMMIT in the transcript",
        )
    if settlement_key is not None:
        check.record(True, f"settlement key used for RECEIPTs: {settlement_key}")
    return check
