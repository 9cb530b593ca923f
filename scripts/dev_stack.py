"""`make run` and `make demo`: the whole suite on one machine, embedded defaults, no Docker.

run:  generates dev keys and tokens once into .dev/ (git-ignored; keys and tokens owner-only,
      written atomically, never through a symlink), starts settlement (:8001,
      SQLite + mock ledger) and the provider (:8000) wired to it, funds the demo buyer, and
      stays in the foreground; Ctrl-C stops both.
demo: a buyer against that stack, printing the lifecycle step by step with balances before
      and after and the settlement's RECEIPT verified.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pact_schema import Keypair, verify_envelope
from pact_schema.client import PactClient, PactClientError
from pact_schema.files import ensure_private_dir, write_private
from pact_schema.money import format_wire_amount
from pact_schema.transcript import verify_transcript

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / ".dev"
STACK_ENV = DEV / "stack.json"
PROVIDER_PORT = int(os.environ.get("PACT_DEV_PROVIDER_PORT", "8000"))
SETTLEMENT_PORT = int(os.environ.get("PACT_DEV_SETTLEMENT_PORT", "8001"))
PROVIDER_URL = f"http://127.0.0.1:{PROVIDER_PORT}"
SETTLEMENT_URL = f"http://127.0.0.1:{SETTLEMENT_PORT}"
DEMO_FUNDING = Decimal("1.00")
BIN = Path(sys.executable).parent


def _say(text: str) -> None:
    print(text, flush=True)


def _stack() -> dict[str, Any]:
    """Keys and tokens of the dev stack, made once and kept in .dev/ (never committed)."""
    ensure_private_dir(DEV)
    if STACK_ENV.exists():
        data: dict[str, Any] = json.loads(STACK_ENV.read_text())
        return data
    keys = ensure_private_dir(DEV / "keys")
    for name in ("provider", "buyer", "settlement"):
        path = keys / f"{name}.json"
        if not path.exists():
            Keypair.generate().save(path, overwrite=False)
    data = {
        "api_token": "dev-api-" + secrets.token_urlsafe(24),
        "admin_token": "dev-admin-" + secrets.token_urlsafe(24),
        "provider_key_file": str(keys / "provider.json"),
        "buyer_key_file": str(keys / "buyer.json"),
        "settlement_key_file": str(keys / "settlement.json"),
    }
    # Atomically, 0600, never through a symlink (pact_schema.files).
    write_private(STACK_ENV, json.dumps(data, indent=2), overwrite=False)
    return data


def _wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url}/readyz did not turn ready within {seconds:.0f} s")


def _fund(stack: dict[str, Any], agent: str) -> None:
    """Deposit demo funds to an agent's ledger account (the buyer's money, the provider's bond)."""
    admin = {"Authorization": f"Bearer {stack['admin_token']}"}
    account = httpx.get(f"{SETTLEMENT_URL}/v1/accounts/{agent}", headers=admin, timeout=5)
    available = Decimal(account.json()["available"]) if account.status_code == 200 else Decimal(0)
    if available >= DEMO_FUNDING / 2:
        return
    response = httpx.post(
        f"{SETTLEMENT_URL}/v1/accounts/{agent}/deposits",
        headers={**admin, "Idempotency-Key": f"dev-fund-{agent}-{int(time.time())}"},
        json={"amount": str(DEMO_FUNDING)},
        timeout=5,
    )
    response.raise_for_status()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly shutdown as Ctrl-C


def run() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    stack = _stack()
    provider = Keypair.load(stack["provider_key_file"])
    buyer = Keypair.load(stack["buyer_key_file"])
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_")}
    settlement_env = {
        **base_env,
        "PACT_SETTLEMENT_ENV": "development",
        "PACT_SETTLEMENT_API_TOKEN": stack["api_token"],
        "PACT_SETTLEMENT_ADMIN_TOKEN": stack["admin_token"],
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider.public_key_b58,
        "PACT_SETTLEMENT_SIGNING_KEY_FILE": stack["settlement_key_file"],
        "PACT_SETTLEMENT_SQLITE_PATH": str(DEV / "settlement.sqlite3"),
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "1",
    }
    provider_env = {
        **base_env,
        "PACT_PROVIDER_ENV": "development",
        "PACT_PROVIDER_SIGNING_KEY_FILE": stack["provider_key_file"],
        "PACT_PROVIDER_SETTLEMENT_URL": SETTLEMENT_URL,
        "PACT_PROVIDER_SETTLEMENT_TOKEN": stack["api_token"],
    }
    host = "127.0.0.1"
    _say(f"starting settlement on {SETTLEMENT_URL} (SQLite at .dev/settlement.sqlite3) ...")
    processes = [
        subprocess.Popen(
            [str(BIN / "pact-settlement"), "serve", "--host", host, "--port", str(SETTLEMENT_PORT)],
            env=settlement_env,
        )
    ]
    try:
        _wait_ready(SETTLEMENT_URL, processes[0])
        _fund(stack, buyer.public_key_b58)
        _fund(stack, provider.public_key_b58)  # its seller bond (REQUIRE_SELLER_BOND)
        _say(f"starting provider on {PROVIDER_URL} ...")
        processes.append(
            subprocess.Popen(
                [str(BIN / "pact-provider"), "serve", "--host", host, "--port", str(PROVIDER_PORT)],
                env=provider_env,
            )
        )
        _wait_ready(PROVIDER_URL, processes[1])
        _say(
            "\n".join(
                [
                    "",
                    "Pact suite is running. Ctrl-C stops both services.",
                    f"  provider    {PROVIDER_URL}   docs {PROVIDER_URL}/docs",
                    f"  settlement  {SETTLEMENT_URL}   docs {SETTLEMENT_URL}/docs",
                    f"  provider key  {provider.public_key_b58}",
                    f"  demo buyer    {buyer.public_key_b58} (funded, key in .dev/keys/buyer.json)",
                    "  tokens        .dev/stack.json",
                    "Try it:  make demo",
                    f"   or:   uv run pact negotiate {PROVIDER_URL} --intent weather.data "
                    "--scope NYC --max-price 0.0002 --accept --key-file .dev/keys/buyer.json",
                    "",
                ]
            )
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if p.poll() is not None)
        _say(f"a service exited with code {failed.returncode}; stopping the other")
        return 1
    except KeyboardInterrupt:
        _say("\nstopping ...")
        return 0
    finally:
        # A second Ctrl-C or SIGTERM (uv forwards signals too) must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def _balances(http: httpx.AsyncClient, headers: dict[str, str], *agents: str) -> list[str]:
    out = []
    for agent in agents:
        response = await http.get(f"{SETTLEMENT_URL}/v1/accounts/{agent}", headers=headers)
        body = response.json() if response.status_code == 200 else {}
        out.append(f"available {body.get('available', '0')}, locked {body.get('locked', '0')}")
    return out


def _describe(message: dict[str, Any]) -> str:
    kind = message["type"]
    if kind == "INTENT":
        scope = json.dumps(message.get("scope"), ensure_ascii=False)
        budget = _amount(message, "max_price")
        return f"INTENT  {message.get('intent')} for {scope}, max_price {budget}"
    if kind == "ASK":
        return (
            f"ASK     price {_amount(message, 'price')} per {message.get('unit')}, "
            f"bond {_amount(message, 'bond_required')}, firm for {message.get('valid_for_ms')} ms"
        )
    if kind == "REJECT":
        return f"REJECT  {message.get('code')}: {message.get('reason')}"
    settlement = message.get("settlement")
    if isinstance(settlement, dict):
        return (
            f"ACCEPT  acknowledged: settlement {settlement.get('id')} is {settlement.get('state')}"
        )
    return f"{kind:7} agreed_price {_amount(message, 'agreed_price')}"


def _amount(message: dict[str, Any], name: str) -> str:
    return format_wire_amount(message.get(name))


async def _demo() -> int:
    if not STACK_ENV.exists():
        _say("No dev stack found: start it with `make run` in another terminal first.")
        return 2
    stack = _stack()
    buyer = Keypair.load(stack["buyer_key_file"])
    provider_key = Keypair.load(stack["provider_key_file"]).public_key_b58
    admin = {"Authorization": f"Bearer {stack['admin_token']}"}
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            await http.get(f"{PROVIDER_URL}/healthz")
        except httpx.HTTPError:
            _say(f"The provider is not answering at {PROVIDER_URL}: run `make run` first.")
            return 2
        before = await _balances(http, admin, buyer.public_key_b58, provider_key)
        _say("Balances before")
        _say(f"  buyer   {before[0]}\n  seller  {before[1]}\n")
        client = PactClient(PROVIDER_URL, buyer, http=http, provider_key=provider_key)
        try:
            result = await client.negotiate(
                intent="weather.data",
                scope={"city": "Zürich", "fields": ["temperature_c", "wind_kph"]},
                max_price=Decimal("0.0002"),
                latency_ms=200,
                freshness_sec=60,
                accept=True,
                challenge_window_ms=2_000,
            )
        except PactClientError as exc:
            _say(f"negotiation failed: {exc}")
            return 1
        for envelope in result.transcript:
            from_buyer = envelope["signer_public_key_b58"] == buyer.public_key_b58
            arrow = "buyer → provider" if from_buyer else "provider → buyer"
            _say(f"{arrow:17} {_describe(envelope['message'])}")
        if result.outcome != "ACCEPTED":
            _say(f"\noutcome: {result.outcome} ({result.reject_code}: {result.reason})")
            return 1
        settlement = result.settlement or {}
        _say(f"\nsettlement {settlement.get('id')}: funds locked on rail {settlement.get('rail')}")
        delivery = result.delivery or {}
        _say(f"delivery   {delivery.get('status')}: commitment {delivery.get('commit_hash_hex')}")
        proof = "verified" if result.delivery_verified else "DOES NOT MATCH"
        _say(
            f"payload    sha256(payload_b64 + nonce_b64) {proof}: "
            f"{(result.payload or b'').decode()[:120]}"
        )
        intent_id = result.intent_id
        _say("\nwaiting for the challenge window to close and the sweeper to release ...")
        state, deadline = settlement.get("state"), time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline:
            response = await http.get(f"{SETTLEMENT_URL}/v1/settlements/{intent_id}", headers=admin)
            body = response.json()
            for event in body.get("events", []):
                name = event.get("event") or event.get("type") or event.get("name")
                key = f"{name}-{event.get('to_state')}"
                if key not in seen:
                    seen.add(key)
                    _say(f"  event  {name} → {event.get('to_state', '')}")
            state = body.get("state")
            if state in ("released", "refunded", "slashed", "failed"):
                break
            await asyncio.sleep(0.5)
        _say(f"final state: {state}")
        after = await _balances(http, admin, buyer.public_key_b58, provider_key)
        _say("\nBalances after")
        _say(f"  buyer   {after[0]}\n  seller  {after[1]}")
        published = (await http.get(f"{SETTLEMENT_URL}/.well-known/pact-settlement")).json()
        transcript = (
            await http.get(f"{SETTLEMENT_URL}/v1/settlements/{intent_id}/transcript", headers=admin)
        ).json()
        receipt = body.get("receipt")
        if receipt:
            verified = verify_envelope(receipt)
            ok = verified.signer == published.get("public_key_b58")
            message = verified.message_raw
            _say(
                f"\nRECEIPT   fulfilled={message.get('fulfilled')} "
                f"price={_amount(message, 'agreed_price')} signed by the settlement key "
                f"{'(verified)' if ok else '(WRONG KEY)'}"
            )
        check = verify_transcript(transcript, settlement_key=published.get("public_key_b58"))
        _say(f"transcript: {len(check.lines)} checks, {'all verify' if check.ok else 'FAILED'}")
        path = DEV / f"transcript-{intent_id}.json"
        path.write_text(json.dumps(transcript, indent=2, ensure_ascii=False))
        relative = path.relative_to(ROOT)
        _say(f"saved to {relative}; check it with: uv run pact verify-transcript {relative}")
        return 0 if state == "released" and check.ok else 1


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "run":
        return run()
    if command == "demo":
        return asyncio.run(_demo())
    print("usage: dev_stack.py run|demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
