"""Streaming settlement: ticks/s through the real provider and settlement, and what a stream
costs settlement, against the reference's one-payment-per-tick design measured in the same run.

A scratch database (``pact_bench_stream``) is migrated; ``pact-settlement serve`` (one worker)
serves it and ``pact-provider serve`` (one worker) sells :mod:`bench.stream_goods` (a 32-byte
chunk per tick) in front of it, checkpointing every ``--stream-checkpoint-ticks``. The buyers
are :class:`pact_schema.stream_client.StreamBuyer` in this process (each chunk's signature and
``seq`` checked, a signed cumulative voucher posted per tick, ``tick_ms`` 1, the protocol's
least: one stream cannot pass 1,000 ticks/s). The seller's voucher timeout is raised to 120 s:
the buyers share one process, which on a loaded 2-core machine may keep a buyer waiting for
seconds. Measured:

* **one stream** of ``--stream-ticks`` ticks: ticks/s, and per stream the provider→settlement
  calls (the provider's ``pact_provider_settlement_attempts_total``), the settlement's journal
  transactions (``lock`` + ``release_partial``), events and checkpoints;
* **N concurrent streams** (``--streams``, each ``--stream-ticks-each`` ticks): total ticks/s;
* **per-tick payments**, the reference's design (``packages/sdk/src/exchange/streaming.ts``
  pays each tick separately): the same number of ticks as the one stream, each paid by its own
  settlement create (a one-tick budget locked) and release (closed with its one-tick voucher),
  sent one after another as one stream's ticks are, pre-signed. Its rail steps and journal
  transactions are 2 per tick.

Server CPU (provider and settlement process trees) per tick is reported beside the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pact_schema import now_ms
from pact_schema.stream_client import StreamBuyer
from pact_schema.streaming import amount_for_ticks, sign_voucher

from bench.common import (
    PYTHON,
    Server,
    free_port,
    log,
    machine_info,
    shell_line,
    tree_cpu_seconds,
    utc_now_iso,
)
from bench.pg import PgTarget, pg_server_version, scratch_database
from bench.settlement_bench import (
    API_TOKEN,
    BUYERS,
    PROVIDER,
    fund_buyers,
    migrate,
    settlement_env,
    settlement_server,
    shown_env,
    signed_accept,
    wait_ready,
)

DATABASE = "pact_bench_stream"
BUDGET = Decimal("0.5")
PLANNED = 10_000  # 0.00005 a tick
TICK_PRICE = amount_for_ticks(BUDGET, PLANNED, 1)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _accept(i: int, *, run: str, budget: Decimal, now: int) -> dict[str, Any]:
    """A buyer-signed streaming ACCEPT (with the provider-signed ASK) locking ``budget``."""
    return signed_accept(
        BUYERS[i % len(BUYERS)],
        f"stream-{run}-{i:07d}",
        price=budget,
        bond=Decimal(0),
        mode="streaming",
        now=now,
    )


async def _create(http: httpx.AsyncClient, accept: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(
        "/v1/settlements",
        json={"accept": accept, "rail": None},
        headers={**AUTH, "Idempotency-Key": f"accept-{accept['message_hash_hex']}"},
    )
    if r.status_code != 201 or r.json().get("state") != "streaming":
        raise RuntimeError(f"create refused ({r.status_code}): {r.text[:500]}")
    body: dict[str, Any] = r.json()
    return body


def _provider_calls(metrics: str) -> int:
    """Every provider→settlement attempt so far (any outcome)."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("pact_provider_settlement_attempts_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def _settlement_costs(dsn: str, ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        journal = await conn.fetch(
            "SELECT kind, count(*) AS n FROM journal_transactions WHERE settlement_id = ANY($1) "
            "GROUP BY kind ORDER BY kind",
            ids,
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM settlement_events WHERE settlement_id = ANY($1)", ids
        )
        checkpoints = await conn.fetchval(
            "SELECT COALESCE(SUM(stream_checkpoints), 0) FROM settlements WHERE id = ANY($1)", ids
        )
        rail_steps = await conn.fetchval(
            "SELECT count(*) FROM rail_operations WHERE settlement_id = ANY($1)", ids
        )
        states = await conn.fetch(
            "SELECT state, count(*) AS n FROM settlements WHERE id = ANY($1) GROUP BY state", ids
        )
    finally:
        await conn.close()
    n = max(1, len(ids))
    return {
        "settlements": len(ids),
        "states": {r["state"]: r["n"] for r in states},
        "journal_transactions": {r["kind"]: r["n"] for r in journal},
        "journal_transactions_per_settlement": round(sum(r["n"] for r in journal) / n, 3),
        "rail_steps_per_settlement": round(rail_steps / n, 3),
        "events_per_settlement": round(events / n, 3),
        "checkpoints_per_settlement": round(checkpoints / n, 3),
    }


class _Cpu:
    def __init__(self, *servers: Server) -> None:
        self.servers = servers
        self.before = [tree_cpu_seconds(s.pid) for s in servers]

    def used(self) -> float:
        pairs = zip(self.servers, self.before, strict=True)
        return round(sum(tree_cpu_seconds(s.pid) - b for s, b in pairs), 3)


async def _streams(
    provider_url: str,
    settlement: httpx.AsyncClient,
    servers: tuple[Server, Server],
    *,
    count: int,
    ticks: int,
    first: int,
    run: str,
) -> dict[str, Any]:
    """``count`` concurrent streams of ``ticks`` ticks each; rates and costs."""
    now = now_ms()
    accepts = [_accept(first + i, run=run, budget=BUDGET, now=now) for i in range(count)]
    created = [await _create(settlement, a) for a in accepts]
    metrics_before = (await settlement.get(f"{provider_url}/metrics")).text
    limits = httpx.Limits(max_connections=2 * count + 10, max_keepalive_connections=2 * count)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        buyers = [
            StreamBuyer(
                provider_url,
                BUYERS[(first + i) % len(BUYERS)],
                seller=PROVIDER.public_key_b58,
                intent_id=c["intent_id"],
                budget=BUDGET,
                tick_ms=1,
                planned_ticks=PLANNED,
                max_ticks=ticks,
                http=http,
            )
            for i, c in enumerate(created)
        ]
        cpu = _Cpu(*servers)
        client_cpu = time.process_time()
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(b.run() for b in buyers), return_exceptions=True)
        elapsed = time.perf_counter() - started
        server_cpu = cpu.used()
        client_cpu = time.process_time() - client_cpu
    metrics_after = (await settlement.get(f"{provider_url}/metrics")).text
    failed = [repr(r) for r in outcomes if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} streams failed: {failed[:3]}")
    results = [r for r in outcomes if not isinstance(r, BaseException)]
    paid = sum(r.ticks for r in results)
    bad = [(r.code, r.reason) for r in results if r.code != "BUYER_STOPPED" or r.ticks != ticks]
    if bad:
        raise RuntimeError(f"streams ended badly: {bad[:5]}")
    ids = [c["id"] for c in created]
    await asyncio.sleep(0.5)  # the close answers before the stop event; nothing is pending
    calls = _provider_calls(metrics_after) - _provider_calls(metrics_before)
    return {
        "streams": count,
        "ticks_each": ticks,
        "ticks": paid,
        "seconds": round(elapsed, 3),
        "ticks_per_s": round(paid / elapsed, 1),
        "server_cpu_ms_per_tick": round(1000 * server_cpu / max(1, paid), 4),
        "buyer_cpu_ms_per_tick": round(1000 * client_cpu / max(1, paid), 4),
        "provider_settlement_calls_per_stream": round(calls / count, 2),
        "ids": ids,
    }


async def _per_tick_payments(
    settlement: httpx.AsyncClient, servers: tuple[Server, Server], *, ticks: int, run: str
) -> dict[str, Any]:
    """The reference's design: each tick a settlement of its own, created and released."""
    now = now_ms()
    pairs = []
    for i in range(ticks):
        accept = _accept(i, run=f"{run}-tick", budget=TICK_PRICE, now=now)
        accept_intent = accept["message"]["intent_id"]
        voucher = sign_voucher(
            BUYERS[i % len(BUYERS)],
            intent_id=accept_intent,
            seller=PROVIDER.public_key_b58,
            ticks=1,
            paid_amount=TICK_PRICE,
            seq=1,
            sent_at_ms=now,
        )
        pairs.append((accept, voucher))
    ids: list[str] = []
    cpu = _Cpu(*servers)
    client_cpu = time.process_time()
    started = time.perf_counter()
    for accept, voucher in pairs:
        created = await _create(settlement, accept)
        r = await settlement.post(
            f"/v1/settlements/{created['id']}/close",
            json={
                "voucher": voucher,
                "by": "buyer",
                "code": "BUYER_STOPPED",
                "reason": "one tick paid",
                "chunks": 1,
            },
            headers={**AUTH, "Idempotency-Key": f"close-{created['id']}"},
        )
        if r.status_code != 200 or r.json().get("state") != "released":
            raise RuntimeError(f"release refused ({r.status_code}): {r.text[:500]}")
        ids.append(created["id"])
    elapsed = time.perf_counter() - started
    server_cpu = cpu.used()
    client_cpu = time.process_time() - client_cpu
    return {
        "ticks": ticks,
        "seconds": round(elapsed, 3),
        "ticks_per_s": round(ticks / elapsed, 1),
        "server_cpu_ms_per_tick": round(1000 * server_cpu / ticks, 4),
        "buyer_cpu_ms_per_tick": round(1000 * client_cpu / ticks, 4),
        "provider_settlement_calls_per_tick": 2,
        "ids": ids,
    }


def _provider_server(settlement_url: str, key_file: Path, work: Path, checkpoint: int) -> Server:
    port = free_port()
    env = {
        "PACT_PROVIDER_ENV": "development",
        "PACT_PROVIDER_SIGNING_KEY_FILE": str(key_file),
        "PACT_PROVIDER_SETTLEMENT_URL": settlement_url,
        "PACT_PROVIDER_SETTLEMENT_TOKEN": API_TOKEN,
        "PACT_PROVIDER_SETTLEMENT_MODES": "hash_reveal,streaming",
        "PACT_PROVIDER_STREAM_MODULE": "bench.stream_goods",
        "PACT_PROVIDER_STREAM_CHECKPOINT_TICKS": str(checkpoint),
        "PACT_PROVIDER_FULFILMENT": "none",
        "PACT_PROVIDER_LOG_LEVEL": "WARNING",
        # The buyers share one process with the bench: on a loaded 2-core machine a buyer may
        # wait seconds for its turn; the seller must not stop its stream for that.
        "PACT_PROVIDER_STREAM_VOUCHER_TIMEOUT_MS": "120000",
    }
    cmd = [PYTHON, "-m", "pact_provider.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Server(
        "provider",
        cmd,
        env,
        f"http://127.0.0.1:{port}/healthz",
        work / "provider.log",
        shown_env=shown_env(env),
    )


async def _measure(
    args: argparse.Namespace,
    settlement: Server,
    provider: Server,
    dsn: str,
    run: str,
) -> dict[str, Any]:
    settlement_url = settlement.ready_url.replace("/healthz", "")
    provider_url = provider.ready_url.replace("/healthz", "")
    servers = (settlement, provider)
    async with httpx.AsyncClient(base_url=settlement_url, timeout=60) as http:
        log("warm-up: 2 streams of 50 ticks")
        await _streams(provider_url, http, servers, count=2, ticks=50, first=900, run=run + "w")
        log(f"one stream of {args.stream_ticks} ticks")
        one = await _streams(
            provider_url, http, servers, count=1, ticks=args.stream_ticks, first=0, run=run
        )
        one["settlement"] = await _settlement_costs(dsn, one.pop("ids"))
        log(f"  {one['ticks_per_s']:.0f} ticks/s; {one['settlement']}")
        log(f"per-tick payments (the reference's design): {args.stream_ticks} create+release")
        per_tick = await _per_tick_payments(http, servers, ticks=args.stream_ticks, run=run)
        per_tick["settlement"] = await _settlement_costs(dsn, per_tick.pop("ids"))
        log(f"  {per_tick['ticks_per_s']:.0f} ticks/s")
        log(f"{args.streams} concurrent streams of {args.stream_ticks_each} ticks")
        many = await _streams(
            provider_url,
            http,
            servers,
            count=args.streams,
            ticks=args.stream_ticks_each,
            first=1,
            run=run + "m",
        )
        many["settlement"] = await _settlement_costs(dsn, many.pop("ids"))
        log(f"  {many['ticks_per_s']:.0f} ticks/s")
    return {"one_stream": one, "per_tick_reference": per_tick, "concurrent": many}


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    machine = machine_info()
    machine["postgres"] = pg_server_version(target)
    work = Path(tempfile.mkdtemp(prefix="pact-bench-streaming-"))
    run_tag = utc_now_iso()[11:19].replace(":", "")
    env = settlement_env(target, DATABASE) | {
        "PACT_SETTLEMENT_REQUIRE_SELLER_BOND": "false",
        "PACT_SETTLEMENT_LOG_LEVEL": "WARNING",
    }
    commands: dict[str, str] = {}
    key_file = work / "provider-key.json"
    PROVIDER.save(key_file)
    with scratch_database(target, DATABASE):
        commands["migrate"] = shell_line(migrate(env), shown_env(env))
        settlement = settlement_server(env, work, workers=1)
        with settlement:
            wait_ready(settlement)
            fund_buyers(settlement)
            settlement_url = settlement.ready_url.replace("/healthz", "")
            provider = _provider_server(
                settlement_url, key_file, work, args.stream_checkpoint_ticks
            )
            with provider:
                commands["settlement server"] = shell_line(settlement.cmd, settlement.shown_env)
                commands["provider server"] = shell_line(provider.cmd, provider.shown_env)
                results = asyncio.run(
                    _measure(args, settlement, provider, target.dsn(DATABASE), run_tag)
                )
    one, per_tick = results["one_stream"], results["per_tick_reference"]
    many = results["concurrent"]
    one_tx = one["settlement"]["journal_transactions_per_settlement"]
    tick_tx = per_tick["settlement"]["journal_transactions_per_settlement"] * per_tick["ticks"]
    summary = {
        "one_stream_ticks_per_s": one["ticks_per_s"],
        "concurrent_ticks_per_s": many["ticks_per_s"],
        "per_tick_reference_ticks_per_s": per_tick["ticks_per_s"],
        "speedup_one_stream": round(one["ticks_per_s"] / per_tick["ticks_per_s"], 2),
        "server_cpu_per_tick_ratio": round(
            per_tick["server_cpu_ms_per_tick"] / one["server_cpu_ms_per_tick"], 1
        )
        if one["server_cpu_ms_per_tick"]
        else None,
        "journal_transactions_per_stream": one_tx,
        "journal_transactions_per_tick_reference": tick_tx / per_tick["ticks"],
        "journal_transactions_ratio": round(tick_tx / one_tx, 1) if one_tx else None,
        "provider_settlement_calls_per_stream": one["provider_settlement_calls_per_stream"],
        "provider_settlement_calls_reference": 2 * per_tick["ticks"],
        "pass": {
            "constant_settlement_transactions": one_tx == 2
            and many["settlement"]["journal_transactions_per_settlement"] == 2,
            "faster_than_per_tick_payments": one["ticks_per_s"] > per_tick["ticks_per_s"],
        },
    }
    return {
        "suite": "streaming",
        "finished_utc": utc_now_iso(),
        "machine": machine,
        "settings": {
            "stream_ticks": args.stream_ticks,
            "streams": args.streams,
            "stream_ticks_each": args.stream_ticks_each,
            "checkpoint_ticks": args.stream_checkpoint_ticks,
            "budget": str(BUDGET),
            "planned_ticks": PLANNED,
            "tick_price": str(TICK_PRICE),
            "workers": {"settlement": 1, "provider": 1},
        },
        "commands": commands,
        "results": results,
        "summary": summary,
    }
