"""Bulk-load settled history straight into the settlement service's own tables (server-side
``INSERT … SELECT generate_series``), so growth can be measured at 10 000 and 1 000 000 rows.

Per settlement: one ``settlements`` row (90 % ``released`` and closed, 10 % ``locked``), two
``settlement_events`` (created, locked), one ``idempotency_keys`` row (the create's key), one
``rail_operations`` row (the lock) and two ``transcripts`` (ACCEPT and ASK, placeholder JSON).
Journal rows are not made (the ledger's tables grow with real creates only). Rows are spread over
the past, ``created_at`` 50 ms apart, over 1 000 buyers and one seller.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

SETTLEMENTS = """
INSERT INTO settlements (id, intent_id, state, rail, asset, amount, bond, bond_locked, buyer,
    seller, settlement_mode, proof_type, challenge_window_ms, delivery_deadline_ms,
    delivery_deadline_at, quote_expires_at, accept_hash, request_fingerprint, closed_at,
    created_at, updated_at)
SELECT 'st_bulk_' || lpad(i::text, 12, '0'),
       'bulk-' || lpad(i::text, 12, '0'),
       CASE WHEN i % 10 = 0 THEN 'locked' ELSE 'released' END,
       'ledger', 'USD', 0.00008, 0.00016, 0,
       left(md5('buyer' || (i % 1000)) || md5('b' || (i % 1000)), 44),
       $3,
       'hash_reveal', 'hash_reveal', 60000,
       (extract(epoch FROM ts) * 1000)::bigint + 3600000, ts + interval '1 hour',
       ts + interval '20 seconds',
       md5('a' || i) || md5('b' || i), md5('f' || i) || md5('g' || i),
       CASE WHEN i % 10 = 0 THEN NULL ELSE ts + interval '1 minute' END,
       ts, ts
FROM (SELECT i, now() - ($2::bigint - i) * interval '50 milliseconds' AS ts
      FROM generate_series($1::bigint, $2::bigint) AS i) AS g
"""

EVENTS = """
INSERT INTO settlement_events (settlement_id, seq, event, from_state, to_state, actor, data,
    created_at)
SELECT 'st_bulk_' || lpad(i::text, 12, '0'), s.seq, s.event, s.from_state, s.to_state, 'bench',
       '{}'::json, now() - ($2::bigint - i) * interval '50 milliseconds'
FROM generate_series($1::bigint, $2::bigint) AS i,
     (VALUES (1, 'created', NULL, 'pending'), (2, 'locked', 'pending', 'locked'))
       AS s(seq, event, from_state, to_state)
"""

IDEMPOTENCY = """
INSERT INTO idempotency_keys (id, scope, key, fingerprint, resource_id, status_code,
    created_at, completed_at)
SELECT 'idk_bulk_' || lpad(i::text, 12, '0'), 'settlements.create',
       'accept-bulk-' || lpad(i::text, 12, '0'), md5('f' || i) || md5('g' || i),
       'st_bulk_' || lpad(i::text, 12, '0'), 201, ts, ts
FROM (SELECT i, now() - ($2::bigint - i) * interval '50 milliseconds' AS ts
      FROM generate_series($1::bigint, $2::bigint) AS i) AS g
"""

RAIL_OPERATIONS = """
INSERT INTO rail_operations (id, settlement_id, rail, step, idempotency_key, status, amount,
    bond, attempts, created_at, updated_at, resolved_at)
SELECT 'rop_bulk_' || lpad(i::text, 12, '0'), 'st_bulk_' || lpad(i::text, 12, '0'), 'ledger',
       'lock', 'lock-bulk-' || lpad(i::text, 12, '0'), 'succeeded', 0.00008, 0, 1, ts, ts, ts
FROM (SELECT i, now() - ($2::bigint - i) * interval '50 milliseconds' AS ts
      FROM generate_series($1::bigint, $2::bigint) AS i) AS g
"""

TRANSCRIPTS = """
INSERT INTO transcripts (id, settlement_id, kind, message_hash_hex, signer, envelope_json,
    created_at)
SELECT 'tr_bulk_' || k.kind || '_' || lpad(i::text, 12, '0'),
       'st_bulk_' || lpad(i::text, 12, '0'), k.kind, md5(k.kind || i) || md5('h' || i),
       $3, '{"bulk":true}', now() - ($2::bigint - i) * interval '50 milliseconds'
FROM generate_series($1::bigint, $2::bigint) AS i, (VALUES ('ACCEPT'), ('ASK')) AS k(kind)
"""

STEPS = (
    ("settlements", SETTLEMENTS, True),
    ("settlement_events", EVENTS, False),
    ("idempotency_keys", IDEMPOTENCY, False),
    ("rail_operations", RAIL_OPERATIONS, False),
    ("transcripts", TRANSCRIPTS, True),
)
CHUNK = 250_000


async def _load_table(dsn: str, sql: str, args_for: Any, first: int, last: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        # Scratch database, rows consistent by construction: skip the per-row FK (RI) triggers
        # and the append-only triggers while loading (superuser only), and don't wait on WAL.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        started = time.perf_counter()
        for lo in range(first, last + 1, CHUNK):
            hi = min(last, lo + CHUNK - 1)
            await conn.execute(sql, *args_for(lo, hi))
        return round(time.perf_counter() - started, 2)
    finally:
        await conn.close()


TABLES = [step[0] for step in STEPS]

SECONDARY = """
SELECT 'index' AS kind, i.indexrelid::regclass::text AS name, t.relname AS tbl,
       pg_get_indexdef(i.indexrelid) AS def
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
UNION ALL
SELECT 'unique', c.conname, t.relname, pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
WHERE t.relname = ANY($1::text[]) AND c.contype = 'u'
"""


async def _secondary(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(SECONDARY, TABLES))
    finally:
        await conn.close()


async def _run_all(dsn: str, statements: list[str], parallel: int = 2) -> None:
    slots = asyncio.Semaphore(parallel)

    async def one(sql: str) -> None:
        async with slots:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SET maintenance_work_mem = '256MB'")
                await conn.execute(sql)
            finally:
                await conn.close()

    await asyncio.gather(*(one(sql) for sql in statements))


async def bulk_load(
    dsn: str, first: int, last: int, seller: str, *, rebuild_indexes: bool = False
) -> dict[str, Any]:
    """Insert settlements ``first``..``last`` (inclusive) with their rows; ANALYZE after.

    ``settlements`` first, then its child tables two at a time (one per core). With
    ``rebuild_indexes`` the secondary indexes and unique constraints of these tables are dropped
    for the load and made again after it (sorting 1M keys once beats 1M B-tree insertions);
    their definitions are read from the catalog, so the schema stays the service's own.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    secondary = await _secondary(dsn) if rebuild_indexes else []
    if secondary:
        drops = [
            f'DROP INDEX "{r["name"]}"'
            if r["kind"] == "index"
            else f'ALTER TABLE "{r["tbl"]}" DROP CONSTRAINT "{r["name"]}"'
            for r in secondary
        ]
        await _run_all(dsn, drops, parallel=1)

    def args(with_seller: bool) -> Any:
        return lambda lo, hi: [lo, hi, seller] if with_seller else [lo, hi]

    table, sql, with_seller = STEPS[0]
    timings[table] = await _load_table(dsn, sql, args(with_seller), first, last)
    slots = asyncio.Semaphore(2)

    async def one(step: tuple[str, str, bool]) -> None:
        async with slots:
            timings[step[0]] = await _load_table(dsn, step[1], args(step[2]), first, last)

    await asyncio.gather(*(one(step) for step in STEPS[1:]))
    if secondary:
        t = time.perf_counter()
        await _run_all(
            dsn,
            [
                r["def"]
                if r["kind"] == "index"
                else f'ALTER TABLE "{r["tbl"]}" ADD CONSTRAINT "{r["name"]}" {r["def"]}'
                for r in secondary
            ],
        )
        timings["rebuild_indexes"] = round(time.perf_counter() - t, 2)
    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        await conn.execute("ANALYZE")
        timings["analyze"] = round(time.perf_counter() - t, 2)
    finally:
        await conn.close()
    timings["total"] = round(time.perf_counter() - started, 2)
    return timings
