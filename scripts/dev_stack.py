"""`make run` and `make demo`: the whole suite on one machine, embedded defaults, no Docker.

run:  refuses to start (one line, nothing touched) when its ports are taken; generates dev keys
      once into .dev/ (git-ignored; owner-only, written atomically, never through a symlink);
      starts settlement (:8001, SQLite + mock ledger) and the provider (:8000) wired to it,
      with readable console logs prefixed by the service's name; funds the demo buyer; stays in
      the foreground. Ctrl-C stops both and exits 0. The provider sells the demo weather data
      per request (hash_reveal) and examples/weather_seller's live feed per tick (streaming);
      that folder is on its import path, so its modules can be named in PACT_PROVIDER_* settings.
demo: a buyer against that stack, printing the lifecycle step by step with balances before
      and after and the settlement's RECEIPT verified; then a short paid stream.

Settings: every PACT_SETTLEMENT_* and PACT_PROVIDER_* variable you set is passed to its
service and wins over the stack's defaults; what the wiring needs follows your values (the
provider's SETTLEMENT_TOKEN is settlement's API_TOKEN, settlement's PROVIDER_KEYS the provider's
key). PACT_DEV_PROVIDER_PORT, PACT_DEV_SETTLEMENT_PORT, PACT_DEV_DIR (the state folder,
default .dev) and PACT_DEV_READY_WITHIN_S (seconds each service may take to turn ready, 60)
belong to the stack itself. See the root README, "make run".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
from pact_schema import Keypair, parse_message, verify_envelope
from pact_schema.client import PactClient, PactClientError
from pact_schema.files import ensure_private_dir, write_private
from pact_schema.money import format_wire_amount
from pact_schema.stream_client import StreamBuyer
from pact_schema.streaming import amount_for_ticks
from pact_schema.transcript import verify_transcript

ROOT = Path(__file__).resolve().parent.parent
DEV = Path(os.environ.get("PACT_DEV_DIR") or ROOT / ".dev").resolve()
STACK_ENV = DEV / "stack.json"
HOST = "127.0.0.1"
PROVIDER_PORT = int(os.environ.get("PACT_DEV_PROVIDER_PORT", "8000"))
SETTLEMENT_PORT = int(os.environ.get("PACT_DEV_SETTLEMENT_PORT", "8001"))
PROVIDER_URL = f"http://{HOST}:{PROVIDER_PORT}"
SETTLEMENT_URL = f"http://{HOST}:{SETTLEMENT_PORT}"
# Settlement's documented development tokens (its README): the stack uses them unless you set
# PACT_SETTLEMENT_API_TOKEN / PACT_SETTLEMENT_ADMIN_TOKEN, so the README's examples work as
# written. They are refused outside development; the stack listens on 127.0.0.1 only.
DEV_API_TOKEN = "dev-settlement-api-token"  # noqa: S105 - documented development default
DEV_ADMIN_TOKEN = "dev-settlement-admin-token"  # noqa: S105 - documented development default
DEMO_FUNDING = Decimal("1.00")
BIN = Path(sys.executable).parent
# How long each service may take to turn ready (a cold start on a busy machine is slow).
READY_WITHIN_S = float(os.environ.get("PACT_DEV_READY_WITHIN_S", "60"))
# The example seller's modules (weather_stream, weather_module) import by name in the provider.
EXAMPLE_SELLER = ROOT / "examples" / "weather_seller"
# The demo stream: a budget for PLANNED ticks, of which the buyer pays for DEMO_STREAM_TICKS.
DEMO_STREAM_BUDGET = Decimal("0.001")
DEMO_STREAM_PLANNED_TICKS = 100
DEMO_STREAM_TICKS = 25
DEMO_STREAM_TICK_MS = 40


def _say(text: str) -> None:
    print(text, flush=True)


def _keys() -> dict[str, str]:
    """The dev key files (provider, buyer, settlement), made once in .dev/keys."""
    keys = ensure_private_dir(DEV / "keys")
    paths = {}
    for name in ("provider", "buyer", "settlement"):
        path = keys / f"{name}.json"
        if not path.exists():
            Keypair.generate().save(path, overwrite=False)
        paths[name] = str(path)
    return paths


def _stack(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Prepare the stack's state in .dev/: the key files (made once) and ``stack.json``, what
    `make demo` needs of the running stack (URLs, the admin token in force, the keys), written
    atomically, owner-only, never through a symbolic link (``pact_schema.files``)."""
    ensure_private_dir(DEV)
    settings = stack_settings(os.environ if env is None else env, _keys())
    data = {
        "provider_url": PROVIDER_URL,
        "settlement_url": SETTLEMENT_URL,
        "admin_token": settings.settlement["PACT_SETTLEMENT_ADMIN_TOKEN"],
        "provider_key": settings.provider_key,
        "provider_key_file": settings.provider.get("PACT_PROVIDER_SIGNING_KEY_FILE"),
        "buyer_key_file": settings.buyer_key_file,
        "settlement_key_file": settings.settlement.get("PACT_SETTLEMENT_SIGNING_KEY_FILE"),
    }
    write_private(STACK_ENV, json.dumps(data, indent=2))
    return data


def _read_stack() -> dict[str, Any] | None:
    """``stack.json`` as `make run` last wrote it; None before the first run."""
    try:
        data: dict[str, Any] = json.loads(STACK_ENV.read_text())
    except (OSError, ValueError):
        return None
    return data if "provider_url" in data else None


# --------------------------------------------------------------------------- settings


def _own(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class StackSettings:
    settlement: dict[str, str]
    """PACT_SETTLEMENT_* the settlement process gets: the stack's defaults, then yours."""
    provider: dict[str, str]
    """PACT_PROVIDER_* the provider process gets."""
    yours: list[str]
    """The PACT_SETTLEMENT_* / PACT_PROVIDER_* names you set (they won)."""
    provider_key: str
    buyer_key_file: str


def stack_settings(user: Mapping[str, str], keys: Mapping[str, str]) -> StackSettings:
    """The two services' settings: the stack's development defaults, overridden by every
    PACT_SETTLEMENT_* / PACT_PROVIDER_* variable in ``user``; the wiring between the two then
    follows the values in force."""
    settlement = {
        "PACT_SETTLEMENT_ENV": "development",
        "PACT_SETTLEMENT_API_TOKEN": DEV_API_TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": DEV_ADMIN_TOKEN,
        "PACT_SETTLEMENT_SQLITE_PATH": str(DEV / "settlement.sqlite3"),
        "PACT_SETTLEMENT_SWEEP_INTERVAL_S": "1",
        "PACT_SETTLEMENT_LOG_JSON": "false",
    }
    provider = {
        "PACT_PROVIDER_ENV": "development",
        "PACT_PROVIDER_SETTLEMENT_URL": SETTLEMENT_URL,
        "PACT_PROVIDER_LOG_JSON": "false",
        "PACT_PROVIDER_SETTLEMENT_MODES": "hash_reveal,streaming",
        "PACT_PROVIDER_STREAM_MODULE": "weather_stream",
    }
    mine_s, mine_p = _own(user, "PACT_SETTLEMENT_"), _own(user, "PACT_PROVIDER_")
    if not {"PACT_SETTLEMENT_SIGNING_KEY_FILE", "PACT_SETTLEMENT_SIGNING_KEY"} & set(mine_s):
        settlement["PACT_SETTLEMENT_SIGNING_KEY_FILE"] = keys["settlement"]
    if not {"PACT_PROVIDER_SIGNING_KEY_FILE", "PACT_PROVIDER_SIGNING_KEY"} & set(mine_p):
        provider["PACT_PROVIDER_SIGNING_KEY_FILE"] = keys["provider"]
    settlement.update(mine_s)
    provider.update(mine_p)
    if "PACT_PROVIDER_SIGNING_KEY_FILE" in provider:
        provider_key = Keypair.load(provider["PACT_PROVIDER_SIGNING_KEY_FILE"]).public_key_b58
    else:
        secret = provider["PACT_PROVIDER_SIGNING_KEY"]
        provider_key = Keypair.from_secret_b58(secret).public_key_b58
    settlement.setdefault("PACT_SETTLEMENT_PROVIDER_KEYS", provider_key)
    provider.setdefault("PACT_PROVIDER_SETTLEMENT_TOKEN", settlement["PACT_SETTLEMENT_API_TOKEN"])
    return StackSettings(
        settlement=settlement,
        provider=provider,
        yours=sorted({*mine_s, *mine_p}),
        provider_key=provider_key,
        buyer_key_file=keys["buyer"],
    )


# ----------------------------------------------------------------------------- ports


def port_in_use(host: str, port: int) -> bool:
    """True when a server could not listen on ``host:port`` (as uvicorn binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _taken_ports() -> list[str]:
    return [
        f"{HOST}:{port} ({name}, {variable})"
        for name, port, variable in (
            ("settlement", SETTLEMENT_PORT, "PACT_DEV_SETTLEMENT_PORT"),
            ("provider", PROVIDER_PORT, "PACT_DEV_PROVIDER_PORT"),
        )
        if port_in_use(HOST, port)
    ]


# ------------------------------------------------------------------------- processes


@contextlib.contextmanager
def _own_terminal() -> Iterator[None]:
    """Take the terminal's foreground for this process while the stack runs, as a shell does
    for a job: Ctrl-C then reaches the stack alone (which stops both services and exits 0),
    not `make`, which would report the interrupt as an error. Not on a terminal (CI, a pipe,
    a background job): nothing to do."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    try:
        if os.tcgetpgrp(tty) != os.getpgrp():
            yield  # started in the background: leave the terminal alone
            return
        before = os.getpgrp()
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.setpgid(0, 0)
        os.tcsetpgrp(tty, os.getpgrp())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, before)
    finally:
        os.close(tty)


def _pump(name: str, stream: IO[bytes]) -> None:
    """Copy a service's output, each line prefixed with its name."""
    prefix = f"{name:<10} | ".encode()
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        out.write(prefix + line)
        out.flush()


def _start(name: str, port: int, settings: Mapping[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_")} | dict(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE_SELLER), env.get("PYTHONPATH")]))
    command = f"pact-{name}"
    process = subprocess.Popen(
        [str(BIN / command), "serve", "--host", HOST, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        process_group=0,  # the terminal's Ctrl-C is ours to handle: we stop the services
    )
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
    return process


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], seconds: float = READY_WITHIN_S
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"make run: {url}: the service exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"make run: {url}/readyz did not turn ready within {seconds:.0f} s")


def _fund(admin_token: str, agent: str) -> None:
    """Deposit demo funds to an agent's ledger account (the buyer's money, the provider's bond)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
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


def _banner(settings: StackSettings, buyer: str) -> str:
    s = settings.settlement
    admin_token = s["PACT_SETTLEMENT_ADMIN_TOKEN"]
    api_token = s["PACT_SETTLEMENT_API_TOKEN"]
    shown_admin = (
        admin_token if admin_token == DEV_ADMIN_TOKEN else "(yours: PACT_SETTLEMENT_ADMIN_TOKEN)"
    )
    shown_api = api_token if api_token == DEV_API_TOKEN else "(yours: PACT_SETTLEMENT_API_TOKEN)"
    lines = [
        "",
        "=" * 78,
        "Pact suite is running. Ctrl-C stops both services.",
        f"  provider    {PROVIDER_URL}   docs {PROVIDER_URL}/docs",
        f"  settlement  {SETTLEMENT_URL}   docs {SETTLEMENT_URL}/docs",
        f"  provider key   {settings.provider_key}",
        f"  demo buyer     {buyer} (funded, key in {_shown(settings.buyer_key_file)})",
        f"  admin token    {shown_admin}",
        f"  provider token {shown_api}",
    ]
    if settings.yours:
        lines.append(f"  your settings  {', '.join(settings.yours)}")
    lines += [
        "Try it:  make demo",
        f"   or:   uv run pact negotiate {PROVIDER_URL} --intent weather.data "
        f"--scope NYC --max-price 0.0002 --accept --key-file {_shown(settings.buyer_key_file)}",
        "   a stream: the same with --settlement-mode streaming, then "
        f"uv run pact stream {PROVIDER_URL} --intent <intent_id> --budget <agreed price> "
        "--tick-ms 100 "
        f"--max-ticks 20 --key-file {_shown(settings.buyer_key_file)}",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def _shown(path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def run() -> int:
    taken = _taken_ports()
    if taken:
        _say(
            f"make run: not starting: {' and '.join(taken)} already in use (another `make run`?"
            " stop it, or choose other ports with the variable named)"
        )
        return 2
    # Ctrl-C and SIGTERM stop the stack in order, even where SIGINT came in ignored (a
    # background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    _stack()
    settings = stack_settings(os.environ, _keys())
    buyer = Keypair.load(settings.buyer_key_file)
    processes: list[subprocess.Popen[bytes]] = []
    with _own_terminal():
        try:
            _say(f"starting settlement on {SETTLEMENT_URL} and the provider on {PROVIDER_URL} ...")
            processes.append(_start("settlement", SETTLEMENT_PORT, settings.settlement))
            processes.append(_start("provider", PROVIDER_PORT, settings.provider))
            _wait_ready(SETTLEMENT_URL, processes[0])
            admin_token = settings.settlement["PACT_SETTLEMENT_ADMIN_TOKEN"]
            _fund(admin_token, buyer.public_key_b58)
            _fund(admin_token, settings.provider_key)  # its seller bond (REQUIRE_SELLER_BOND)
            _wait_ready(PROVIDER_URL, processes[1])
            _say(_banner(settings, buyer.public_key_b58))
            while all(p.poll() is None for p in processes):
                time.sleep(0.2)
            failed = next(p for p in processes if p.poll() is not None)
            _say(f"make run: a service exited with code {failed.returncode}; stopping the other")
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
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


async def _balances(
    http: httpx.AsyncClient, base: str, headers: dict[str, str], *agents: str
) -> list[str]:
    out = []
    for agent in agents:
        response = await http.get(f"{base}/v1/accounts/{agent}", headers=headers)
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
    stack = _read_stack()
    if stack is None:
        _say("No dev stack found: start it with `make run` in another terminal first.")
        return 2
    provider_url, settlement_url = stack["provider_url"], stack["settlement_url"]
    buyer = Keypair.load(stack["buyer_key_file"])
    provider_key = stack["provider_key"]
    admin = {"Authorization": f"Bearer {stack['admin_token']}"}
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            await http.get(f"{provider_url}/healthz")
        except httpx.HTTPError:
            _say(f"The provider is not answering at {provider_url}: run `make run` first.")
            return 2
        before = await _balances(http, settlement_url, admin, buyer.public_key_b58, provider_key)
        _say("Balances before")
        _say(f"  buyer   {before[0]}\n  seller  {before[1]}\n")
        client = PactClient(provider_url, buyer, http=http, provider_key=provider_key)
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
            response = await http.get(f"{settlement_url}/v1/settlements/{intent_id}", headers=admin)
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
        after = await _balances(http, settlement_url, admin, buyer.public_key_b58, provider_key)
        _say("\nBalances after")
        _say(f"  buyer   {after[0]}\n  seller  {after[1]}")
        published = (await http.get(f"{settlement_url}/.well-known/pact-settlement")).json()
        transcript = (
            await http.get(f"{settlement_url}/v1/settlements/{intent_id}/transcript", headers=admin)
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
        relative = _shown(str(path))
        _say(f"saved to {relative}; check it with: uv run pact verify-transcript {relative}")
        if not (state == "released" and check.ok):
            return 1
        streamed = await _demo_stream(http, stack, buyer)
        after = await _balances(http, settlement_url, admin, buyer.public_key_b58, provider_key)
        _say("\nBalances after both")
        _say(f"  buyer   {after[0]}\n  seller  {after[1]}")
        return 0 if streamed else 1


async def _demo_stream(http: httpx.AsyncClient, stack: dict[str, Any], buyer: Keypair) -> bool:
    """ACCEPT in streaming mode (the price is the stream's budget), then pay tick by tick with
    signed cumulative vouchers, stop early, and check that settlement paid the seller exactly
    the highest voucher and refunded the rest."""
    provider_url, provider_key = stack["provider_url"], stack["provider_key"]
    _say("\n" + "-" * 78)
    _say("A paid stream: one weather observation per tick, paid per tick, settled once")
    client = PactClient(provider_url, buyer, http=http, provider_key=provider_key)
    try:
        accepted = await client.negotiate(
            intent="weather.data",
            scope="NYC",
            max_price=Decimal("0.0002"),
            settlement_mode="streaming",
            accept=True,
        )
    except PactClientError as exc:
        _say(f"negotiation failed: {exc}")
        return False
    if accepted.outcome != "ACCEPTED" or accepted.price is None:
        _say(f"outcome: {accepted.outcome} ({accepted.reject_code}: {accepted.reason})")
        return False
    budget = accepted.price
    rate = amount_for_ticks(budget, DEMO_STREAM_PLANNED_TICKS, 1)
    _say(
        f"ACCEPT    budget {format_wire_amount(budget)} locked once for "
        f"{DEMO_STREAM_PLANNED_TICKS} ticks of {DEMO_STREAM_TICK_MS} ms "
        f"({format_wire_amount(rate)} a tick); the buyer stops after {DEMO_STREAM_TICKS}"
    )
    shown: list[bytes] = []

    def show(chunk: bytes) -> None:
        if len(shown) < 3:
            shown.append(chunk)
            _say(f"  chunk   {chunk.decode()[:100]}")
        elif len(shown) == 3:
            shown.append(chunk)
            _say("  ...     (every chunk signed by the seller, checked, then paid with a voucher)")

    buyer_stream = StreamBuyer(
        provider_url,
        buyer,
        seller=provider_key,
        intent_id=accepted.intent_id,
        budget=budget,
        tick_ms=DEMO_STREAM_TICK_MS,
        planned_ticks=DEMO_STREAM_PLANNED_TICKS,
        max_ticks=DEMO_STREAM_TICKS,
        http=http,
        on_chunk=show,
    )
    result = await buyer_stream.run()
    settlement = result.settlement or {}
    receipt = result.receipt
    paid = parse_message(receipt["message"]).paid_amount if receipt else None
    _say(
        f"stopped   {result.code} after {result.ticks} ticks; the highest voucher says "
        f"{format_wire_amount(result.paid_amount)}"
    )
    _say(
        f"settled   {settlement.get('state')}: RECEIPT paid_amount "
        f"{format_wire_amount(paid) if paid is not None else '(none)'} "
        f"{'= the highest voucher' if paid == result.paid_amount else '(DIFFERS)'}, "
        f"the rest of the budget refunded to the buyer"
    )
    return settlement.get("state") == "released" and paid == result.paid_amount


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
