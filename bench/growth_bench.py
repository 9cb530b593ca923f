"""Cost growth: p99 of settlement create and read with 10 000 vs 1 000 000 settlements.

Two scratch databases are migrated and bulk-loaded (``bench.bulk``: server-side
``INSERT … SELECT generate_series`` into the service's own tables) to 10 000 and 1 000 000
settlements, each served by its own ``pact-settlement serve`` (one worker). The two are measured
in alternating rounds (small, large, small, ...), so drift on a shared machine hits both alike:
creates (new signed ACCEPTs), reads by intent id, and list pages behind a cursor, 8 callers.
Then ``EXPLAIN (ANALYZE, BUFFERS)`` of the hot queries, captured from the service's own
repository code (SQLAlchemy statements as the service sends them) on the large database.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import bulk, loadgen
from bench.common import Server, log, machine_info, percentile, shell_line, utc_now_iso
from bench.pg import PgTarget, fetch, pg_server_version, scratch_database
from bench.settlement_bench import (
    PROVIDER,
    fund_buyers,
    get_request,
    migrate,
    port_of,
    settlement_env,
    settlement_server,
    shown_env,
    wait_ready,
    write_accepts,
    write_requests,
)

TARGET_GROWTH = 1.5
CALLERS = 8


def _cursor(created_at: Any, id_: str) -> str:
    """The service's opaque cursor (``settlements.repository.encode_cursor``)."""
    raw = json.dumps([created_at.isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _sample_rows(target: PgTarget, database: str, n: int) -> list[Any]:
    return await fetch(
        target,
        database,
        "SELECT intent_id, id, created_at FROM settlements ORDER BY random() LIMIT $1",
        n,
    )


def read_specs(rows: list[Any], count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [get_request(f"/v1/settlements/{rng.choice(rows)['intent_id']}") for _ in range(count)]


def list_specs(rows: list[Any], count: int, rng: random.Random) -> list[dict[str, Any]]:
    specs = [get_request("/v1/settlements?limit=50")]
    for _ in range(count - 1):
        row = rng.choice(rows)
        specs.append(
            get_request(f"/v1/settlements?limit=50&cursor={_cursor(row['created_at'], row['id'])}")
        )
    return specs


def _measure(port: int, requests: Path) -> dict[str, Any]:
    return loadgen.run_asyncgen(
        port,
        connections=CALLERS,
        duration_s=0,
        requests=requests,
        count=True,
        procs=2,
        keep_latencies=True,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    machine = machine_info()
    machine["postgres"] = pg_server_version(target)
    sizes = [int(s) for s in str(args.growth_sizes).split(",")]
    work = Path(tempfile.mkdtemp(prefix="pact-bench-growth-"))
    run_tag = utc_now_iso()[11:19].replace(":", "")
    rng = random.Random(8)
    samples = max(200, args.growth_samples)
    names = [f"{args.database}_{n}" for n in sizes]
    loads: dict[int, Any] = {}
    ops: dict[int, dict[str, list[float]]] = {
        n: {"create": [], "read": [], "list": []} for n in sizes
    }
    statuses: dict[int, dict[str, dict[str, int]]] = {n: {} for n in sizes}
    explains: list[dict[str, Any]] = []
    commands: dict[str, str] = {}
    with contextlib_exit_stack() as stack:
        servers: dict[int, Server] = {}
        rows: dict[int, list[Any]] = {}
        for n, name in zip(sizes, names, strict=True):
            stack.enter_context(scratch_database(target, name))
            env = settlement_env(target, name)
            commands["migrate"] = shell_line(migrate(env), shown_env(env))
            log(f"bulk-loading {n} settlements into {name}")
            loads[n] = asyncio.run(
                bulk.bulk_load(
                    target.dsn(name), 1, n, PROVIDER.public_key_b58, rebuild_indexes=n > 100_000
                )
            )
            log(f"  {loads[n]}")
            server = settlement_server(env, work, name=f"settlement-{n}")
            stack.enter_context(server)
            wait_ready(server)
            fund_buyers(server)
            servers[n] = server
            rows[n] = asyncio.run(_sample_rows(target, name, 2000))
        commands["settlement servers"] = shell_line(
            servers[sizes[0]].cmd, servers[sizes[0]].shown_env
        )
        commands["bulk load"] = (
            "bench.bulk.bulk_load(dsn, 1, N, seller) (INSERT … SELECT generate_series)"
        )
        rounds = 3
        per_round = max(60, samples // rounds)
        first = 0
        for round_no in range(1, rounds + 1):
            for n in sizes if round_no % 2 else list(reversed(sizes)):
                port = port_of(servers[n])
                # creates are ~40/s on one worker: fewer of them, still hundreds per size
                n_creates = per_round // 2
                creates = write_accepts(
                    work / f"g{n}-{round_no}.jsonl", first, n_creates, run=f"{run_tag}{n}"
                )
                first += n_creates
                reads = write_requests(work / f"r{n}.jsonl", read_specs(rows[n], per_round, rng))
                lists = write_requests(
                    work / f"l{n}.jsonl", list_specs(rows[n], max(20, per_round // 5), rng)
                )
                for op, path in (("create", creates), ("read", reads), ("list", lists)):
                    result = _measure(port, path)
                    ops[n][op].extend(result["latencies_ms"])
                    for code, count in result["statuses"].items():
                        by = statuses[n].setdefault(op, {})
                        by[code] = by.get(code, 0) + count
                log(f"round {round_no}, {n} rows: done")
        explains = asyncio.run(
            explain_hot_queries(settlement_env(target, names[-1]), rows[sizes[-1]])
        )
        commands["load"] = (
            f"python -m bench.loadgen --port PORT --requests FILE -c {CALLERS} --count "
            "(creates, GET /v1/settlements/{intent_id}, GET /v1/settlements?limit=50&cursor=…)"
        )
    table: list[dict[str, Any]] = []
    small, large = sizes[0], sizes[-1]
    for op in ("create", "read", "list"):
        a, b = sorted(ops[small][op]), sorted(ops[large][op])
        p99a, p99b = percentile(a, 99), percentile(b, 99)
        table.append(
            {
                "op": op,
                f"p50_{small}": round(percentile(a, 50), 2),
                f"p99_{small}": round(p99a, 2),
                f"p50_{large}": round(percentile(b, 50), 2),
                f"p99_{large}": round(p99b, 2),
                "growth_p99": round(p99b / p99a, 3) if p99a else 0.0,
                "samples": [len(a), len(b)],
            }
        )
    return {
        "suite": "growth",
        "label": args.label,
        "finished_utc": utc_now_iso(),
        "machine": machine,
        "config": {
            "sizes": sizes,
            "callers": CALLERS,
            "rounds": 3,
            "samples_per_op_per_size": samples,
            "targets": {"growth_p99": TARGET_GROWTH},
        },
        "commands": commands,
        "bulk_load_seconds": {str(k): v for k, v in loads.items()},
        "statuses": {str(k): v for k, v in statuses.items()},
        "summary": {
            "ops": table,
            "pass": {f"growth_{t['op']}": t["growth_p99"] <= TARGET_GROWTH for t in table},
        },
        "explain": explains,
    }


def contextlib_exit_stack() -> Any:
    import contextlib

    return contextlib.ExitStack()


async def explain_hot_queries(env: dict[str, str], rows: list[Any]) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) the statements the service's repositories send."""
    import os

    from sqlalchemy import event, text

    os.environ.update(env)
    from pact_settlement.config import SettlementSettings
    from pact_settlement.db.engine import create_engine, create_sessionmaker
    from pact_settlement.idempotency.repository import IdempotencyRepository
    from pact_settlement.settlements.repository import (
        SettlementEventRepository,
        SettlementRepository,
    )

    engine = create_engine(SettlementSettings())
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: Any) -> None:
        captured.append((statement, params))

    row = rows[len(rows) // 2]
    out = []
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            buyer = str(
                (
                    await session.execute(
                        text("SELECT buyer FROM settlements WHERE id = :id"), {"id": row["id"]}
                    )
                ).scalar_one()
            )
            settlements = SettlementRepository.from_session(session)
            events = SettlementEventRepository.from_session(session)
            idem = IdempotencyRepository.from_session(session)
            cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                (
                    "lookup by intent_id (GET /v1/settlements/{intent_id}, create's replay check)",
                    lambda: settlements.find_by_intent(row["intent_id"]),
                ),
                ("events of a settlement (every read)", lambda: events.for_settlement(row["id"])),
                (
                    "idempotency lookup (create)",
                    lambda: idem.find("settlements.create", "accept-bulk-" + row["id"][-12:]),
                ),
                (
                    "list, first page (GET /v1/settlements?limit=50)",
                    lambda: settlements.list(
                        state=None, buyer=None, seller=None, rail=None, limit=51, cursor=None
                    ),
                ),
                (
                    "list with cursor (next page)",
                    lambda: settlements.list(
                        state=None,
                        buyer=None,
                        seller=None,
                        rail=None,
                        limit=51,
                        cursor=(row["created_at"], row["id"]),
                    ),
                ),
                (
                    "list by buyer with cursor (GET /v1/settlements?buyer=…&cursor=…)",
                    lambda: settlements.list(
                        state=None,
                        buyer=buyer,
                        seller=None,
                        rail=None,
                        limit=51,
                        cursor=(row["created_at"], row["id"]),
                    ),
                ),
                (
                    "list by state with cursor (GET /v1/settlements?state=locked&cursor=…)",
                    lambda: settlements.list(
                        state="locked",
                        buyer=None,
                        seller=None,
                        rail=None,
                        limit=51,
                        cursor=(row["created_at"], row["id"]),
                    ),
                ),
            ]
            for title, call in cases:
                captured.clear()
                started = time.perf_counter()
                await call()
                elapsed = (time.perf_counter() - started) * 1000
                statement, params = captured[-1]
                conn = await session.connection()
                result = await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                )
                plan = "\n".join(r[0] for r in result.fetchall())
                out.append(
                    {
                        "query": title,
                        "sql": " ".join(statement.split()),
                        "params": [str(p) for p in (params or ())],
                        "plan": plan,
                        "client_ms": round(elapsed, 2),
                        "seq_scan": "Seq Scan" in plan,
                    }
                )
            await session.rollback()
    finally:
        await engine.dispose()
    return out
