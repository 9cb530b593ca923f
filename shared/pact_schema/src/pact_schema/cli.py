"""``pact``: the buyer's command line (keys, negotiation, envelope and transcript checks).

Every argument is checked before anything is read, signed or sent, by one converter per kind
of value (amounts, counts, URLs, intent types, scopes, keys). Whatever goes wrong ends in one
line on stderr, ``pact: error: …``, and a documented exit code — never a traceback:

* 0 — done (verified, quoted, accepted);
* 1 — refused or invalid: the envelope or transcript does not verify, the provider refused;
* 2 — bad arguments or input: a malformed value, an unreadable, binary or non-JSON file, a key
  file that is not one (the error names the file);
* 3 — the provider could not be reached, or answered with an HTTP error;
* 4 — an internal error of this program (a bug: the line says what to report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import httpx
from pydantic import ValidationError

from pact_schema.canonical import parse_json
from pact_schema.client import NegotiationResult, PactClient, PactClientError
from pact_schema.envelope import EnvelopeError, verify_envelope
from pact_schema.keys import KeyFormatError, Keypair, check_public_key
from pact_schema.messages import MessageValidationError
from pact_schema.money import (
    WireMoneyError,
    decimal_to_wire,
    format_amount,
    format_wire_amount,
    parse_decimal_text,
)
from pact_schema.stream_client import StreamBuyer
from pact_schema.text import UnsafeTextError, check_storable, check_storable_text
from pact_schema.transcript import verify_transcript
from pact_schema.transcript_v4 import export_v4, is_v4, verify_v4

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_REFUSED = 1  # verification failed, or the provider refused
EXIT_USAGE = 2  # bad arguments or unreadable input
EXIT_UNAVAILABLE = 3  # the provider could not be reached or answered with an error
EXIT_INTERNAL = 4  # a bug in this program
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""The largest envelope or transcript file read (a transcript of one trade is kilobytes)."""
MAX_WIRE_INT = 2**53 - 1  # the largest integer a JavaScript number carries exactly
MAX_TIMEOUT_S = 3600.0
MAX_INTENT_TYPE = 256


class CLIError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: object) -> str:
    """``text`` on one line: whitespace runs collapsed, control characters escaped."""
    flat = " ".join(str(text).split())
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in flat
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (argparse prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ argument converters
# Each raises argparse.ArgumentTypeError, which argparse reports as
# "pact <command>: error: argument --name: <reason>" with exit code 2.


def _amount(text: str) -> Decimal:
    """A price: plain decimal text, greater than 0, exactly representable as a JSON number."""
    try:
        value = parse_decimal_text(text)
        if value <= 0:
            raise WireMoneyError(f"must be greater than 0, got {format_amount(value)}")
        decimal_to_wire(value)
    except WireMoneyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _wire_count(text: str) -> int:
    """A non-negative whole number a JSON number carries exactly (milliseconds, seconds)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    value = int(text)
    if value > MAX_WIRE_INT:
        raise argparse.ArgumentTypeError(f"at most {MAX_WIRE_INT}, got {text}")
    return value


def _positive_count(text: str) -> int:
    value = _wire_count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"seconds between 0 and {MAX_TIMEOUT_S:.0f}")
    return value


def _provider_url(text: str) -> str:
    """An http(s) URL with a host: anything else is bad input, not an unreachable provider."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"not a URL ({exc}): {text!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000, "
            f"got {text!r}"
        )
    return text


def _intent_type(text: str) -> str:
    if not 0 < len(text) <= MAX_INTENT_TYPE:
        raise argparse.ArgumentTypeError(f"1 to {MAX_INTENT_TYPE} characters")
    try:
        return check_storable_text(text)
    except UnsafeTextError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scope(text: str) -> str | dict[str, Any]:
    value: Any = text
    if text.startswith("{"):
        try:
            value = parse_json(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"looks like JSON but is not valid: {exc}") from None
        if not isinstance(value, dict):
            value = text
    try:
        check_storable(value, "scope")
    except UnsafeTextError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value  # type: ignore[no-any-return]


def _public_key(text: str) -> str:
    try:
        return check_public_key(text)
    except KeyFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------------------- inputs


def _read_json(path: str) -> Any:
    """The JSON document in ``path`` (``-``: stdin); every failure is a :class:`CLIError`."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with Path(path).open("rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CLIError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise CLIError(f"{name} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{name} is not UTF-8 text (a binary file?)") from None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise CLIError(f"{name} is not valid JSON: {exc}") from exc


def _load_or_make_key(path: str | None) -> Keypair:
    if path is None:
        return Keypair.generate()
    try:
        return Keypair.load(path)
    except KeyFormatError as exc:  # names the file, never quotes its content
        raise CLIError(f"--key-file: {exc}") from exc


# -------------------------------------------------------------------------- commands


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
        print(f"invalid: {one_line(exc)}")
        return EXIT_REFUSED
    except MessageValidationError as exc:
        print(
            f"invalid: signature ok but the message breaks pact/1.0 ({exc.code}): "
            f"{one_line(exc.detail)}"
        )
        return EXIT_REFUSED
    print(
        f"ok: {message.type} for {message.intent_id} signed by {verified.signer} "
        f"(sha256 {verified.envelope.message_hash_hex.lower()})"
    )
    return EXIT_OK


def cmd_verify_transcript(args: argparse.Namespace) -> int:
    document = _read_json(args.file)
    try:
        if is_v4(document):
            check = verify_v4(document, settlement_key=args.settlement_key)
        else:
            check = verify_transcript(document, settlement_key=args.settlement_key)
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from exc
    for good, text in check.lines:
        print(f"{'ok  ' if good else 'FAIL'} {one_line(text)}")
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
        print(one_line(f"{kind:<7} {detail}  (signed by {signer})"))
    for note in result.notes:
        print(f"note: {one_line(note)}")
    price = f" at {format_amount(result.price)}" if result.price is not None else ""
    print(f"outcome: {result.outcome}{price}")
    settlement = result.settlement
    if settlement:
        print(
            one_line(
                f"settlement: {settlement.get('id')} state={settlement.get('state')} "
                f"rail={settlement.get('rail')}"
            )
        )
    delivery = result.delivery
    if delivery is not None:
        status = one_line(delivery.get("status"))
        if result.delivery_verified is None:
            print(f"delivery: {status}")
        else:
            proof = "verified" if result.delivery_verified else "DOES NOT MATCH the commitment"
            print(f"delivery: {status}; sha256(payload_b64 + nonce_b64) {proof}")
        if result.payload is not None:
            preview = result.payload[:200].decode("utf-8", "replace")
            print(f"payload ({len(result.payload)} bytes): {one_line(preview)}")
    if result.reason and result.outcome != "ACCEPTED":
        code = f" ({result.reject_code})" if result.reject_code else ""
        print(f"reason: {one_line(result.reason)}{code}")


async def _negotiate(args: argparse.Namespace) -> int:
    keypair = _load_or_make_key(args.key_file)
    async with PactClient(args.provider_url, keypair, timeout_s=args.timeout) as client:
        try:
            result = await client.negotiate(
                intent=args.intent,
                scope=args.scope,
                max_price=args.max_price,
                latency_ms=args.latency_ms,
                freshness_sec=args.freshness_sec,
                settlement_mode=args.settlement_mode,
                urgent=True if args.urgent else None,
                bids=args.bid,
                accept=args.accept,
            )
        except PactClientError as exc:
            raise CLIError(str(exc), EXIT_UNAVAILABLE) from exc
        except (ValidationError, MessageValidationError, WireMoneyError, UnsafeTextError) as exc:
            # A message built from the arguments that pact/1.0 does not allow: bad input.
            raise CLIError(f"the arguments do not make a valid pact/1.0 message: {exc}") from exc
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        _print_human(result)
    if result.delivery_verified is False:
        return EXIT_REFUSED
    return EXIT_OK if result.outcome in ("QUOTED", "ACCEPTED") else EXIT_REFUSED


def cmd_negotiate(args: argparse.Namespace) -> int:
    return asyncio.run(_negotiate(args))


async def _seller_key(url: str, http_timeout_s: float) -> str:
    """The seller's key from the provider's reference ``GET /health``."""
    try:
        async with httpx.AsyncClient(timeout=http_timeout_s) as http:
            body = (await http.get(f"{url}/health")).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CLIError(
            f"cannot read the seller's key at {url}/health: {exc}", EXIT_UNAVAILABLE
        ) from exc
    key = body.get("seller_pubkey_b58") if isinstance(body, dict) else None
    if not isinstance(key, str):
        raise CLIError(f"{url}/health names no seller_pubkey_b58; pass --seller", EXIT_UNAVAILABLE)
    return key


async def _stream(args: argparse.Namespace) -> int:
    keypair = _load_or_make_key(args.key_file)
    seller = args.seller or await _seller_key(args.provider_url, args.timeout)
    buyer = StreamBuyer(
        args.provider_url,
        keypair,
        seller=seller,
        intent_id=args.intent,
        budget=args.budget,
        tick_ms=args.tick_ms,
        planned_ticks=args.planned_ticks,
        max_spend_per_minute=args.max_spend_per_minute,
        max_ticks=args.max_ticks,
        http=httpx.AsyncClient(timeout=args.timeout),
    )
    try:
        result = await buyer.run()
    except httpx.HTTPError as exc:
        raise CLIError(f"the stream broke: {exc}", EXIT_UNAVAILABLE) from exc
    finally:
        await buyer.aclose()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(f"stream {result.intent_id}: {result.code}: {one_line(result.reason)}")
        print(
            f"ticks paid: {result.ticks}, paid: {format_wire_amount(result.paid_amount)}, "
            f"chunks: {len(result.chunks)}"
        )
        receipt = result.receipt
        if receipt is not None:
            message = receipt.get("message", {})
            print(
                f"receipt: fulfilled={message.get('fulfilled')} "
                f"paid_amount={format_wire_amount(message.get('paid_amount'))} "
                f"ticks={message.get('ticks')} "
                f"chunks={message.get('chunks')}"
            )
    ended_well = result.code in ("COMPLETED", "BUYER_STOPPED", "SELLER_STOPPED")
    return EXIT_OK if ended_well and result.settlement is not None else EXIT_REFUSED


def cmd_stream(args: argparse.Namespace) -> int:
    return asyncio.run(_stream(args))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pact",
        description="Pact buyer tools (pact/1.0). Exit codes: 0 ok, 1 refused or invalid, "
        "2 bad arguments or input, 3 provider unreachable or HTTP error, 4 internal error.",
    )
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
    negotiate.add_argument(
        "provider_url", type=_provider_url, help="http(s) URL, e.g. http://127.0.0.1:8000"
    )
    negotiate.add_argument(
        "--intent", required=True, type=_intent_type, help="intent type, e.g. weather.data"
    )
    negotiate.add_argument(
        "--scope", required=True, type=_scope, help="scope text, or a JSON object"
    )
    negotiate.add_argument(
        "--max-price",
        required=True,
        type=_amount,
        help="plain decimal greater than 0 (ASCII digits, one '.'), e.g. 0.0002",
    )
    negotiate.add_argument("--latency-ms", type=_wire_count, default=500, help="whole ms, ≥ 0")
    negotiate.add_argument("--freshness-sec", type=_wire_count, default=60, help="whole s, ≥ 0")
    negotiate.add_argument("--urgent", action="store_true")
    negotiate.add_argument(
        "--settlement-mode", choices=["hash_reveal", "streaming"], default="hash_reveal"
    )
    negotiate.add_argument(
        "--bid",
        action="append",
        type=_amount,
        default=[],
        help="counter-offer price, one per round (repeat for more rounds); a bid at or above "
        "the current ASK is not sent, and a note says so",
    )
    negotiate.add_argument("--accept", action="store_true", help="accept the final quote")
    negotiate.add_argument("--key-file", help="buyer key file (default: a throwaway key)")
    negotiate.add_argument(
        "--timeout", type=_timeout, default=10.0, help="HTTP timeout, seconds (0-3600)"
    )
    negotiate.add_argument("--json", action="store_true", help="print one JSON object")
    negotiate.set_defaults(func=cmd_negotiate)

    stream = sub.add_parser(
        "stream",
        help="consume a paid stream (an intent already ACCEPTed in streaming mode): verify "
        "every chunk, pay each tick with a signed cumulative voucher",
    )
    stream.add_argument("provider_url", type=_provider_url, help="http(s) URL of the provider")
    stream.add_argument("--intent", required=True, help="the intent id accepted for streaming")
    stream.add_argument("--budget", required=True, type=_amount, help="the agreed price")
    stream.add_argument("--tick-ms", required=True, type=_positive_count, help="tick, ms (≥ 1)")
    stream.add_argument(
        "--planned-ticks", type=_positive_count, default=50, help="rate = budget / planned"
    )
    stream.add_argument("--max-spend-per-minute", type=_amount, help="spend cap per minute")
    stream.add_argument("--max-ticks", type=_positive_count, help="stop after this many ticks")
    stream.add_argument("--seller", help="the seller's key (default: from GET /health)")
    stream.add_argument("--key-file", help="buyer key file (the key that signed the ACCEPT)")
    stream.add_argument(
        "--timeout", type=_timeout, default=30.0, help="HTTP timeout, seconds (0-3600)"
    )
    stream.add_argument("--json", action="store_true", help="print one JSON object")
    stream.set_defaults(func=cmd_stream)

    verify = sub.add_parser("verify", help="check an envelope file's hash and signature")
    verify.add_argument("file", help="envelope JSON file, or - for stdin")
    verify.set_defaults(func=cmd_verify)

    transcript = sub.add_parser(
        "verify-transcript",
        help="check a settlement transcript (every envelope, and that none is missing or "
        "out of order), or a pact-transcript/4.0",
    )
    transcript.add_argument(
        "file",
        help="transcript JSON (GET /v1/settlements/{settlement id or intent id}/transcript, "
        "with or without ?format=pact-transcript/4.0), or - for stdin",
    )
    transcript.add_argument(
        "--settlement-key",
        type=_public_key,
        help="pin the settlement's public key (base58) that signs RECEIPTs",
    )
    transcript.set_defaults(func=cmd_verify_transcript)
    _add_transcript_commands(sub)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except CLIError as exc:
        print(f"pact: error: {one_line(exc)}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("pact: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pact … | head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        print(
            f"pact: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(a bug in pact: please report this line and the command)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad argument (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _run(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
