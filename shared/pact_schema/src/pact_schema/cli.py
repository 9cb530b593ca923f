"""``pact``: the buyer's command line (keys, negotiation, envelope verification)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pact_schema.canonical import parse_json
from pact_schema.client import NegotiationResult, PactClient, PactClientError
from pact_schema.envelope import EnvelopeError, verify_envelope
from pact_schema.keys import KeyFormatError, Keypair, check_public_key
from pact_schema.messages import MessageValidationError
from pact_schema.money import (
    WireMoneyError,
    format_amount,
    format_wire_amount,
    parse_decimal_text,
)
from pact_schema.transcript import verify_transcript
from pact_schema.transcript_v4 import export_v4, is_v4, verify_v4

EXIT_OK = 0
EXIT_REFUSED = 1  # verification failed, or the provider refused
EXIT_USAGE = 2  # bad arguments or unreadable input
EXIT_UNAVAILABLE = 3  # the provider could not be reached or answered with an error


class CLIError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return parse_json(text)
    except ValueError as exc:
        raise CLIError(f"{path} is not valid JSON: {exc}") from exc


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    keypair = Keypair.generate()
    try:
        keypair.save(out, overwrite=args.force)
    except FileExistsError:
        raise CLIError(f"{out} exists; pass --force to overwrite it") from None
    except OSError as exc:  # a symbolic link at --out, a directory that cannot be written
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}") from exc
    print(f"wrote {out} (mode 600)", file=sys.stderr)
    print(keypair.public_key_b58)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    envelope = _read_json(args.file)
    try:
        verified = verify_envelope(envelope)
        message = verified.parse()
    except EnvelopeError as exc:
        print(f"invalid: {exc}")
        return EXIT_REFUSED
    except MessageValidationError as exc:
        print(f"invalid: signature ok but the message breaks pact/1.0 ({exc.code}): {exc.detail}")
        return EXIT_REFUSED
    print(
        f"ok: {message.type} for {message.intent_id} signed by {verified.signer} "
        f"(sha256 {verified.envelope.message_hash_hex.lower()})"
    )
    return EXIT_OK


def cmd_verify_transcript(args: argparse.Namespace) -> int:
    if args.settlement_key is not None:
        try:
            check_public_key(args.settlement_key)
        except KeyFormatError as exc:
            raise CLIError(f"--settlement-key: {exc}") from exc
    document = _read_json(args.file)
    try:
        if is_v4(document):
            check = verify_v4(document, settlement_key=args.settlement_key)
        else:
            check = verify_transcript(document, settlement_key=args.settlement_key)
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from exc
    for good, text in check.lines:
        print(f"{'ok  ' if good else 'FAIL'} {text}")
    print("transcript verifies" if check.ok else "transcript does NOT verify")
    return EXIT_OK if check.ok else EXIT_REFUSED


def cmd_transcript_export(args: argparse.Namespace) -> int:
    """``pact transcript export --format v4 FILE``: a settlement transcript as
    pact-transcript/4.0 (stdout, or ``--out``)."""
    document = _read_json(args.file)
    try:
        exported = export_v4(document)
    except (ValueError, KeyError, TypeError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else f"missing or malformed {exc}"
        raise CLIError(f"{args.file}: not a settlement transcript: {detail}") from exc
    text = json.dumps(exported, ensure_ascii=False, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"wrote {args.out} ({exported['transcript_version']})", file=sys.stderr)
    return EXIT_OK


def _add_transcript_commands(sub: Any) -> None:
    transcript = sub.add_parser("transcript", help="convert settlement transcripts")
    commands = transcript.add_subparsers(dest="transcript_command", required=True)
    export = commands.add_parser(
        "export",
        help="a settlement transcript (GET /v1/settlements/ID/transcript) as pact-transcript/4.0",
    )
    export.add_argument("file", help="settlement transcript JSON, or - for stdin")
    export.add_argument("--format", choices=["v4"], required=True, help="v4: pact-transcript/4.0")
    export.add_argument("--out", help="write here instead of stdout")
    export.set_defaults(func=cmd_transcript_export)


def _load_or_make_key(path: str | None) -> Keypair:
    if path is None:
        return Keypair.generate()
    try:
        return Keypair.load(path)
    except KeyFormatError as exc:
        raise CLIError(str(exc)) from exc


def _parse_scope(text: str) -> str | dict[str, Any]:
    if text.startswith("{"):
        try:
            value = parse_json(text)
        except ValueError as exc:
            raise CLIError(f"--scope looks like JSON but is not valid: {exc}") from exc
        if isinstance(value, dict):
            return value
    return text


def _print_human(result: NegotiationResult) -> None:
    for envelope in result.transcript:
        msg = envelope["message"]
        kind = msg.get("type")
        signer = envelope["signer_public_key_b58"][:10] + "…"
        detail = ""
        if kind == "INTENT":
            detail = f"{msg.get('intent')} max_price={format_wire_amount(msg.get('max_price'))}"
        elif kind in ("ASK", "BID"):
            detail = (
                f"price={format_wire_amount(msg.get('price'))} "
                f"bond={format_wire_amount(msg.get('bond_required'))} "
                f"round={msg.get('round', '-')}"
            )
        elif kind == "ACCEPT":
            detail = f"agreed_price={format_wire_amount(msg.get('agreed_price'))}"
            settlement = msg.get("settlement")
            if isinstance(settlement, dict):
                detail += f" settlement={settlement.get('id')} state={settlement.get('state')}"
        elif kind == "REJECT":
            detail = f"code={msg.get('code')} reason={msg.get('reason')!r}"
        print(f"{kind:<7} {detail}  (signed by {signer})")
    price = f" at {format_amount(result.price)}" if result.price is not None else ""
    print(f"outcome: {result.outcome}{price}")
    settlement = result.settlement
    if settlement:
        print(
            f"settlement: {settlement.get('id')} state={settlement.get('state')} "
            f"rail={settlement.get('rail')}"
        )
    delivery = result.delivery
    if delivery is not None:
        status = delivery.get("status")
        if result.delivery_verified is None:
            print(f"delivery: {status}")
        else:
            proof = "verified" if result.delivery_verified else "DOES NOT MATCH the commitment"
            print(f"delivery: {status}; sha256(payload_b64 + nonce_b64) {proof}")
        if result.payload is not None:
            preview = result.payload[:200].decode("utf-8", "replace")
            print(f"payload ({len(result.payload)} bytes): {preview}")
    if result.reason and result.outcome != "ACCEPTED":
        print(
            f"reason: {result.reason}" + (f" ({result.reject_code})" if result.reject_code else "")
        )


async def _negotiate(args: argparse.Namespace) -> int:
    try:
        max_price = parse_decimal_text(args.max_price)
    except WireMoneyError as exc:
        raise CLIError(f"--max-price: {exc}") from exc
    try:
        bids = [parse_decimal_text(b) for b in args.bid]
    except WireMoneyError as exc:
        raise CLIError(f"--bid: {exc}") from exc
    if max_price <= 0:
        raise CLIError("--max-price must be greater than 0")
    keypair = _load_or_make_key(args.key_file)
    async with PactClient(args.provider_url, keypair, timeout_s=args.timeout) as client:
        try:
            result = await client.negotiate(
                intent=args.intent,
                scope=_parse_scope(args.scope),
                max_price=max_price,
                latency_ms=args.latency_ms,
                freshness_sec=args.freshness_sec,
                settlement_mode=args.settlement_mode,
                urgent=True if args.urgent else None,
                bids=bids,
                accept=args.accept,
            )
        except PactClientError as exc:
            raise CLIError(str(exc), EXIT_UNAVAILABLE) from exc
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        _print_human(result)
    if result.delivery_verified is False:
        return EXIT_REFUSED
    return EXIT_OK if result.outcome in ("QUOTED", "ACCEPTED") else EXIT_REFUSED


def cmd_negotiate(args: argparse.Namespace) -> int:
    return asyncio.run(_negotiate(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pact", description="Pact buyer tools (pact/1.0).")
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="write a new Ed25519 key file; prints the public key")
    keygen.add_argument(
        "--out",
        required=True,
        help="key file to write (mode 600, atomically; a symbolic link there is refused)",
    )
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing file (it becomes mode 600)"
    )
    keygen.set_defaults(func=cmd_keygen)

    negotiate = sub.add_parser("negotiate", help="negotiate with a provider as a buyer")
    negotiate.add_argument("provider_url", help="e.g. http://127.0.0.1:8000")
    negotiate.add_argument("--intent", required=True, help="intent type, e.g. weather.data")
    negotiate.add_argument("--scope", required=True, help="scope text, or a JSON object")
    negotiate.add_argument(
        "--max-price", required=True, help="plain decimal (ASCII digits, one '.'), e.g. 0.0002"
    )
    negotiate.add_argument("--latency-ms", type=int, default=500)
    negotiate.add_argument("--freshness-sec", type=int, default=60)
    negotiate.add_argument("--urgent", action="store_true")
    negotiate.add_argument(
        "--settlement-mode", choices=["hash_reveal", "streaming"], default="hash_reveal"
    )
    negotiate.add_argument(
        "--bid", action="append", default=[], help="counter-offer price (repeat for more rounds)"
    )
    negotiate.add_argument("--accept", action="store_true", help="accept the final quote")
    negotiate.add_argument("--key-file", help="buyer key file (default: a throwaway key)")
    negotiate.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout, seconds")
    negotiate.add_argument("--json", action="store_true", help="print one JSON object")
    negotiate.set_defaults(func=cmd_negotiate)

    verify = sub.add_parser("verify", help="check an envelope file's hash and signature")
    verify.add_argument("file", help="envelope JSON file, or - for stdin")
    verify.set_defaults(func=cmd_verify)

    transcript = sub.add_parser(
        "verify-transcript",
        help="check every envelope of a settlement transcript, or a pact-transcript/4.0",
    )
    transcript.add_argument(
        "file",
        help="transcript JSON (GET /v1/settlements/ID/transcript, with or without "
        "?format=pact-transcript/4.0)",
    )
    transcript.add_argument(
        "--settlement-key", help="pin the settlement's public key (base58) that signs RECEIPTs"
    )
    transcript.set_defaults(func=cmd_verify_transcript)
    _add_transcript_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CLIError as exc:
        print(f"pact: error: {exc}", file=sys.stderr)
        return exc.code
    return code


if __name__ == "__main__":
    raise SystemExit(main())
