"""Settlement ACCEPT → locked on Postgres, against two database ceilings measured alongside.

A fresh database (``pact_bench`` on the configured Postgres) is migrated with
``pact-settlement migrate``; ``pact-settlement serve --workers W`` serves it (``W`` =
``--settlement-workers``, default ``os.cpu_count()``: the service is CPU-bound in Python, so one
worker per core). Buyers are funded through ``POST /v1/accounts/{agent_id}/deposits``. Every
request is a distinct ``POST /v1/settlements`` carrying a buyer-signed ACCEPT with the
provider-signed ASK in ``quote`` (built as ``pact_schema``'s test builders do), signed before
the run. ``bench.loadgen`` fires them from separate processes at 1, 8 and 32 concurrent callers,
each ACCEPT once. Right after each level, at the same client count, for the same time, in the
same database on the same server:

* ``pgbench -c N -j N -T S``, the built-in TPC-B-like script (5 statements) against
  ``pgbench -i`` tables: the issue's ceiling, and the target (creates/s ≥ 0.5 x its tps at 8
  and 32 callers);
* ``pgbench -n -M prepared -f bench/create_shape.sql -D clients=N -c N -j N -T S``: the same
  writes a ledger-rail create performs (19 statements over 8 tables: named locks, idempotency
  and intent lookups, the settlement, 2 events, 2 transcripts, the idempotency key, the rail
  operation, a savepoint around the journal transaction, its 2 legs and the buyer's balance
  update under ``FOR UPDATE``), on the real migrated schema with its constraints and triggers
  and rows as big as the service's, over 128 seeded buyer accounts that no two clients share
  (as the service's callers almost never do). The fair ceiling for this transaction shape:
  creates/s ÷ its tps says how much the service's Python costs on top of its SQL. Reported,
  no target.

The load generator's own ceiling is measured against ``bench.null_server`` with the same
requests and concurrency.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from pact_schema import Keypair, message_to_wire, now_ms, parse_message, sign_message
from pact_schema.quote import quote_binding_fields

from bench import loadgen, profiling
from bench.common import (
    BENCH_DIR,
    PROFILES_DIR,
    PYTHON,
    ROOT,
    Server,
    descendants,
    free_port,
    log,
    machine_info,
    percentile,
    shell_line,
    tree_cpu_seconds,
    utc_now_iso,
)
from bench.pg import (
    PgTarget,
    execute,
    fetch,
    have_pgbench,
    pg_server_version,
    run_cli,
    scratch_database,
)
from bench.rtproxy import RoundTripProxy

DATABASE = "pact_bench"
PROVIDER = Keypair(bytes(range(150, 182)))  # the same key the provider bench signs with
BUYERS = tuple(Keypair(bytes((7 * b + i) % 256 for b in range(32))) for i in range(1, 129))
API_TOKEN = "bench-settlement-api-token-0123456789"  # noqa: S105 - scratch service
ADMIN_TOKEN = "bench-settlement-admin-token-0123456789"  # noqa: S105
DEPOSIT = "1000000"
PRICES = ("0.00008", "0.000096", "0.00012", "0.00005")
TARGET_RATIO = 0.5
VALID_MS = 3_600_000  # quotes and ACCEPTs signed before the run stay valid for an hour
SHAPE_SCRIPT = BENCH_DIR / "create_shape.sql"
SHAPE_BUYERS = 128  # the script's buyers: owners shape-buyer-<32 digits>, seeded before it runs
APP_NAME = "pact-settlement"  # the service's application_name on its Postgres connections
RT_WARM = 60  # creates through the round-trip proxy before counting (pool, statement caches)
RT_COUNT = 300  # creates counted through the proxy, one caller, one worker


# --- the settlement server ---------------------------------------------------------------


def settlement_env(target: PgTarget, database: str) -> dict[str, str]:
    return {
        "PACT_SETTLEMENT_ENV": "development",
        "PACT_SETTLEMENT_DATABASE_URL": target.sqlalchemy_url(database),
        "PACT_SETTLEMENT_API_TOKEN": API_TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": PROVIDER.public_key_b58,
        "PACT_SETTLEMENT_LOG_LEVEL": "INFO",
        # create_shape.sql, the ceiling, locks the buyer's funds only (bond_locked 0); with the
        # bond held, every create would also lock the one seller's account row, and the bench
        # would measure that row's queue (and, without a funded seller, 402 refusals).
        "PACT_SETTLEMENT_REQUIRE_SELLER_BOND": "false",
        # Each worker keeps as many connections as it can have requests in flight (32 callers
        # over the default 2 workers): above DB_POOL_SIZE every request opens an overflow
        # connection and closes it after, a new backend and cold statement caches per create.
        "PACT_SETTLEMENT_DB_POOL_SIZE": "16",
    }


def shown_env(env: dict[str, str]) -> dict[str, str]:
    return {k: ("<bench token>" if k.endswith("_TOKEN") else v) for k, v in env.items()}


def migrate(env: dict[str, str]) -> list[str]:
    cmd = [PYTHON, "-m", "pact_settlement.cli", "migrate"]
    out = run_cli_env(cmd, env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"migrate failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
    return cmd


def run_cli_env(cmd: list[str], env: dict[str, str], timeout: float) -> Any:
    import subprocess

    return subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def settlement_server(
    env: dict[str, str], work: Path, name: str = "settlement", workers: int = 1
) -> Server:
    port = free_port()
    cmd = [PYTHON, "-m", "pact_settlement.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    return Server(
        name,
        cmd,
        env,
        f"http://127.0.0.1:{port}/healthz",
        work / f"{name}.log",
        shown_env=shown_env(env),
    )


def port_of(server: Server) -> int:
    return int(server.ready_url.split(":")[2].split("/")[0])


def wait_ready(server: Server, timeout_s: float = 30.0) -> None:
    url = server.ready_url.replace("/healthz", "/readyz")
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready: {last} {server.tail()}")


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def fund_buyers(server: Server, amount: str = DEPOSIT) -> None:
    base = server.ready_url.replace("/healthz", "")
    for buyer in BUYERS:
        status, body = _post(
            f"{base}/v1/accounts/{buyer.public_key_b58}/deposits",
            {"amount": amount},
            {
                "Authorization": f"Bearer {ADMIN_TOKEN}",
                "Idempotency-Key": f"bench-fund-{buyer.public_key_b58}",
            },
        )
        if status not in (200, 201):
            raise RuntimeError(f"deposit refused ({status}): {body[:500]!r}")


# --- signed ACCEPTs ------------------------------------------------------------------------


def signed_accept(
    buyer: Keypair, intent_id: str, *, price: Decimal, bond: Decimal, mode: str, now: int
) -> dict[str, Any]:
    """A buyer-signed ACCEPT of ``price`` in settlement ``mode``, carrying the provider-signed
    ASK it binds to (``bond`` is the ASK's bond_required)."""
    ask = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": intent_id,
        "price": price,
        "unit": "request",
        "latency_ms": 100,
        "valid_for_ms": VALID_MS,
        "bond_required": bond,
        "sent_at_ms": now,
        "expires_at_ms": now + VALID_MS,
        **quote_binding_fields(
            buyer_key=buyer.public_key_b58,
            round_number=1,
            intent_type="weather.data",
            settlement_mode=mode,
            list_price=price,
        ),
    }
    quote = sign_message(message_to_wire(parse_message(ask)), PROVIDER, signed_at_ms=now)
    accept = {
        "protocol_version": "pact/1.0",
        "type": "ACCEPT",
        "intent_id": intent_id,
        "agreed_price": quote["message"]["price"],
        "settlement_mode": mode,
        "proof_type": mode,
        "challenge_window_ms": 60_000,
        "delivery_deadline_ms": now + 2 * VALID_MS,
        "sent_at_ms": now,
        "expires_at_ms": now + VALID_MS,
        "quote": quote,
    }
    return sign_message(accept, buyer, signed_at_ms=now)


def accept_request(i: int, *, run: str, now: int) -> dict[str, Any]:
    """One ``POST /v1/settlements`` (loadgen spec): an ACCEPT carrying a provider-signed ASK."""
    price = Decimal(PRICES[i % len(PRICES)])
    envelope = signed_accept(
        BUYERS[i % len(BUYERS)],
        f"sb-{run}-{i:07d}",
        price=price,
        bond=price * 2,
        mode="hash_reveal",
        now=now,
    )
    return {
        "method": "POST",
        "path": "/v1/settlements",
        "headers": {
            "Authorization": f"Bearer {API_TOKEN}",
            "Idempotency-Key": f"accept-{envelope['message_hash_hex']}",
        },
        "body": json.dumps({"accept": envelope, "rail": None}, separators=(",", ":")),
    }


def write_accepts(path: Path, first: int, count: int, *, run: str) -> Path:
    now = now_ms()
    with path.open("w") as fh:
        for i in range(first, first + count):
            fh.write(json.dumps(accept_request(i, run=run, now=now)) + "\n")
    return path


def get_request(path: str) -> dict[str, Any]:
    return {"method": "GET", "path": path, "headers": {"Authorization": f"Bearer {API_TOKEN}"}}


def write_requests(path: Path, specs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in specs))
    return path


def fire(
    server_port: int,
    requests: Path,
    *,
    connections: int,
    duration_s: float = 0.0,
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Every request in ``requests`` at most once, ``connections`` at a time."""
    procs = 1 if connections == 1 else 2
    return loadgen.run_asyncgen(
        server_port,
        connections=connections,
        duration_s=duration_s,
        warmup_s=warmup_s,
        requests=requests,
        count=True,
        procs=procs,
    )


# --- pgbench -------------------------------------------------------------------------------


def pgbench_init(target: PgTarget, database: str, scale: int) -> list[str]:
    cmd = ["pgbench", *target.cli_args(), "-i", "-q", "-s", str(scale), database]
    out = run_cli(cmd, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {out.stderr[-1500:]}")
    return cmd


def pgbench_run(
    target: PgTarget,
    database: str,
    clients: int,
    seconds: int,
    work: Path,
    *,
    script: list[str] | None = None,
    tag: str = "tpcb",
) -> dict[str, Any]:
    """``pgbench -c N -j N -T S`` (TPC-B-like unless ``script`` gives other options); a client
    that aborts on an error fails the run (pgbench exits non-zero), and the failed
    (serialisation/deadlock) transactions are counted."""
    prefix = work / f"pgbench_{tag}_c{clients}"
    cmd = [
        "pgbench",
        *target.cli_args(),
        *(script or []),
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-T",
        str(seconds),
        "-l",
        f"--log-prefix={prefix}",
        database,
    ]
    out = run_cli(cmd, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"{shell_line(cmd)} failed: {out.stdout[-800:]} {out.stderr[-1500:]}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    latencies: list[float] = []
    for log_file in work.glob(f"{prefix.name}.*"):
        for line in log_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000.0)
        log_file.unlink()
    latencies.sort()
    return {
        "clients": clients,
        "tps": float(match.group(1)) if match else 0.0,
        "transactions": len(latencies),
        "failed": int(failed.group(1)) if failed else 0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "command": [c for c in cmd if not c.startswith("--log-prefix")],
    }


def shape_options(clients: int) -> list[str]:
    """``create_shape.sql`` as its own prepared transaction; ``-n``: no vacuum of the
    ``pgbench_*`` tables, which it does not touch."""
    if clients > SHAPE_BUYERS:
        raise ValueError(
            f"create_shape.sql gives each client its own buyers: at most {SHAPE_BUYERS}"
        )
    return ["-n", "-M", "prepared", "-f", str(SHAPE_SCRIPT), "-D", f"clients={clients}"]


SEED_SHAPE_BUYERS = f"""
INSERT INTO ledger_accounts (id, owner, asset, kind, allow_negative, available, locked,
                             created_at, updated_at)
SELECT 'acct_shape' || lpad(i::text, 22, '0'), 'shape-buyer-' || lpad(i::text, 32, '0'),
       'USD', 'agent', false, {DEPOSIT}, 0, now(), now()
  FROM generate_series(0, {SHAPE_BUYERS - 1}) AS i
ON CONFLICT (owner, asset) DO NOTHING
"""  # noqa: S608 - module constants, no input


def seed_shape_buyers(target: PgTarget, database: str) -> str:
    """The buyer accounts ``create_shape.sql`` locks, as funded as the bench's own buyers."""
    execute(target, database, SEED_SHAPE_BUYERS)
    sql = " ".join(SEED_SHAPE_BUYERS.split())  # no ", $ or ` in it: safe in double quotes
    return f'{shell_line(["psql", *target.cli_args(), "-d", database])} -c "{sql}"'


# --- Postgres CPU and round trips per create ------------------------------------------------


def backend_cpu(target: PgTarget, database: str) -> dict[int, float]:
    """CPU seconds so far of each Postgres backend serving the service in ``database`` (by
    ``application_name``), read from ``/proc`` (Postgres runs on this machine)."""
    import asyncio

    rows = asyncio.run(
        fetch(
            target,
            database,
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            database,
            APP_NAME,
        )
    )
    out: dict[int, float] = {}
    for row in rows:
        pid = int(row["pid"])
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return out


def backend_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends used between two readings (a backend that started in between counts
    in full; one that ended in between is lost, which the pool makes rare)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def round_trip_phase(
    target: PgTarget, database: str, work: Path, run_tag: str, first: int
) -> dict[str, Any]:
    """One worker, one caller, ``RT_COUNT`` creates with the service's database connections
    relayed through :class:`~bench.rtproxy.RoundTripProxy`: round trips per create (with
    ``BEGIN``/``COMMIT``, pre-pings and prepares), and the worker's Python CPU per create
    measured alone. Both are properties of the code, not of the machine's load. The round
    trips the idle service makes on its own (its background workers' polls) over the same
    time are measured first and subtracted."""
    with RoundTripProxy(target.host, target.port) as proxy:
        proxied = PgTarget("127.0.0.1", proxy.port, target.user)
        env = settlement_env(proxied, database)
        server = settlement_server(env, work, name="settlement-rt", workers=1)
        with server:
            wait_ready(server)
            port = port_of(server)
            fire(
                port,
                write_accepts(work / "rt-warm.jsonl", first, RT_WARM, run=run_tag + "r"),
                connections=1,
            )
            pool = write_accepts(work / "rt.jsonl", first + RT_WARM, RT_COUNT, run=run_tag + "r")
            idle_start, idle_t0 = proxy.round_trips, time.monotonic()
            time.sleep(3.0)
            idle_rate = (proxy.round_trips - idle_start) / (time.monotonic() - idle_t0)
            cpu0, rt0, t0 = tree_cpu_seconds(server.pid), proxy.round_trips, time.monotonic()
            result = fire(port, pool, connections=1)
            elapsed = time.monotonic() - t0
            cpu = tree_cpu_seconds(server.pid) - cpu0
            trips = proxy.round_trips - rt0 - idle_rate * elapsed
    creates = max(1, result["requests"] - result["non200"] - result["socket_errors"])
    out = {
        "creates": creates,
        "statuses": result["statuses"],
        "round_trips_per_create": round(trips / creates, 2),
        "idle_round_trips_per_s": round(idle_rate, 2),
        "python_cpu_ms_per_create": round(1000 * cpu / creates, 2),
    }
    log(
        f"round trips: {out['round_trips_per_create']:.1f} per create "
        f"(idle {idle_rate:.1f}/s subtracted), Python CPU {out['python_cpu_ms_per_create']:.2f} "
        f"ms per create (1 worker, 1 caller, statuses {result['statuses']})"
    )
    return out


# --- the suite -----------------------------------------------------------------------------


def _clients(args: argparse.Namespace) -> list[int]:
    return [int(c) for c in str(args.clients).split(",") if c.strip()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    machine = machine_info()
    machine["postgres"] = pg_server_version(target)
    work = Path(tempfile.mkdtemp(prefix="pact-bench-settlement-"))
    run_tag = utc_now_iso()[11:19].replace(":", "")
    env = settlement_env(target, args.database)
    levels: list[dict[str, Any]] = []
    commands: dict[str, str] = {}
    overhead: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    workers = args.settlement_workers
    if workers < 1:
        raise ValueError("--settlement-workers must be at least 1")
    with scratch_database(target, args.database):
        commands["migrate"] = shell_line(migrate(env), shown_env(env))
        server = settlement_server(env, work, workers=workers)
        with server:
            wait_ready(server)
            fund_buyers(server)
            commands["settlement server"] = shell_line(server.cmd, server.shown_env)
            port = port_of(server)
            # warm-up (connection pool, caches) and a first throughput estimate
            warm = fire(
                port, write_accepts(work / "warm.jsonl", 0, 300, run=run_tag + "w"), connections=8
            )
            rate = max(50.0, warm["rps"])
            log(f"warm-up: {warm['rps']:.0f} creates/s (statuses {warm['statuses']})")
            if have_pgbench():
                scale = max(_clients(args))
                log(f"pgbench -i -s {scale}")
                commands["pgbench init"] = shell_line(pgbench_init(target, args.database, scale))
                commands["create-shape buyers"] = seed_shape_buyers(target, args.database)
            first = 1000
            for clients in _clients(args):
                count = args.accepts or max(200, math.ceil(rate * 2.0 * args.pg_seconds))
                log(f"{clients} callers: signing {count} ACCEPTs")
                pool = write_accepts(work / f"c{clients}.jsonl", first, count, run=run_tag)
                first += count
                cpu_before = tree_cpu_seconds(server.pid)
                pg_before = backend_cpu(target, args.database)
                result = fire(port, pool, connections=clients, duration_s=args.pg_seconds)
                result["server_cpu_s"] = round(tree_cpu_seconds(server.pid) - cpu_before, 2)
                result["postgres_cpu_s"] = round(
                    backend_cpu_delta(pg_before, backend_cpu(target, args.database)), 2
                )
                result.pop("command", None)
                level: dict[str, Any] = {"clients": clients, "settlement": result}
                log(
                    f"  settlement: {result['rps']:.0f} creates/s, p50 {result['p50_ms']:.1f} "
                    f"ms, p99 {result['p99_ms']:.1f} ms, statuses {result['statuses']}"
                )
                if have_pgbench():
                    pg = pgbench_run(target, args.database, clients, args.pg_seconds, work)
                    commands[f"pgbench c={clients}"] = shell_line(pg.pop("command"))
                    level["pgbench"] = pg
                    level["ratio"] = round(result["rps"] / pg["tps"], 4) if pg["tps"] else 0.0
                    log(
                        f"  pgbench TPC-B: {pg['tps']:.0f} tps, p50 {pg['p50_ms']:.2f} ms, "
                        f"p99 {pg['p99_ms']:.2f} ms, failed {pg['failed']} "
                        f"→ ratio {level['ratio']:.3f}"
                    )
                    shape = pgbench_run(
                        target,
                        args.database,
                        clients,
                        args.pg_seconds,
                        work,
                        script=shape_options(clients),
                        tag="shape",
                    )
                    commands[f"pgbench create-shape c={clients}"] = shell_line(shape.pop("command"))
                    level["pgbench_shape"] = shape
                    level["ratio_shape"] = (
                        round(result["rps"] / shape["tps"], 4) if shape["tps"] else 0.0
                    )
                    log(
                        f"  pgbench create-shape: {shape['tps']:.0f} tps, p50 "
                        f"{shape['p50_ms']:.2f} ms, p99 {shape['p99_ms']:.2f} ms, failed "
                        f"{shape['failed']} → ratio {level['ratio_shape']:.3f}"
                    )
                    if pg["failed"] or shape["failed"]:
                        log(
                            f"  WARNING: failed pgbench transactions (TPC-B {pg['failed']}, "
                            f"create-shape {shape['failed']}): the ceilings are not clean"
                        )
                    rate = max(rate, result["rps"])
                levels.append(level)
            commands["load"] = (
                "python -m bench.loadgen --port PORT --requests cN.jsonl -c N --count "
                f"-d {args.pg_seconds} (each ACCEPT once; 1 process for N=1, else 2)"
            )
            if args.profile:
                profile = _profile(server, work, run_tag, first, rate, args)
                first += math.ceil(rate * 2 * (args.profile_seconds + 2))
        round_trips = round_trip_phase(target, args.database, work, run_tag, first)
        overhead = client_overhead(work, _clients(args))
    summary: dict[str, Any] = {
        "levels": [
            {
                "clients": lv["clients"],
                "settlement_rps": round(lv["settlement"]["rps"], 1),
                "p50_ms": round(lv["settlement"]["p50_ms"], 2),
                "p99_ms": round(lv["settlement"]["p99_ms"], 2),
                "non2xx": lv["settlement"]["non200"] + lv["settlement"]["socket_errors"],
                "cpu_ms_per_create": round(
                    1000 * lv["settlement"]["server_cpu_s"] / max(1, lv["settlement"]["requests"]),
                    2,
                ),
                "postgres_cpu_ms_per_create": round(
                    1000
                    * lv["settlement"].get("postgres_cpu_s", 0.0)
                    / max(1, lv["settlement"]["requests"]),
                    2,
                ),
                "pgbench_tps": round(lv.get("pgbench", {}).get("tps", 0.0), 1),
                "pgbench_p50_ms": round(lv.get("pgbench", {}).get("p50_ms", 0.0), 2),
                "pgbench_p99_ms": round(lv.get("pgbench", {}).get("p99_ms", 0.0), 2),
                "pgbench_failed": lv.get("pgbench", {}).get("failed", 0),
                "ratio": lv.get("ratio"),
                "shape_tps": round(lv.get("pgbench_shape", {}).get("tps", 0.0), 1),
                "shape_p50_ms": round(lv.get("pgbench_shape", {}).get("p50_ms", 0.0), 2),
                "shape_p99_ms": round(lv.get("pgbench_shape", {}).get("p99_ms", 0.0), 2),
                "shape_failed": lv.get("pgbench_shape", {}).get("failed", 0),
                "ratio_shape": lv.get("ratio_shape"),
            }
            for lv in levels
        ],
    }
    summary["round_trips"] = round_trips
    summary["pass"] = {
        f"ratio_c{lv['clients']}": (lv["ratio"] or 0) >= TARGET_RATIO
        for lv in summary["levels"]
        if lv["clients"] in (8, 32)
    }
    return {
        "suite": "settlement",
        "label": args.label,
        "finished_utc": utc_now_iso(),
        "machine": machine,
        "config": {
            "database": args.database,
            "clients": _clients(args),
            "seconds_per_level": args.pg_seconds,
            "buyers": len(BUYERS),
            "server_workers": workers,
            "shape_script": str(SHAPE_SCRIPT.relative_to(ROOT)),
            "shape_buyers": SHAPE_BUYERS,
            "pinning": "none (server, Postgres and clients share the machine's cores)",
            "targets": {"ratio_vs_pgbench_at_8_and_32": TARGET_RATIO},
            "ratio_shape": "reported, no target: the fair ceiling for this transaction shape",
        },
        "commands": commands,
        "levels": levels,
        "client_overhead": overhead,
        "summary": summary,
        "profile": profile,
    }


def client_overhead(work: Path, clients: list[int]) -> list[dict[str, Any]]:
    """The same client, concurrency and (replayed) ACCEPT bytes against a server that answers
    at once: the client's own ceiling and latency floor."""
    server = Server(
        "null",
        [PYTHON, "-m", "bench.null_server", "--port", str(port := free_port())],
        {},
        f"http://127.0.0.1:{port}/",
        work / "null.log",
    )
    source = sorted(work.glob("c*.jsonl"))
    out = []
    with server:
        for clients_n in clients:
            pool = work / f"c{clients_n}.jsonl"
            if not pool.exists() and source:
                pool = source[0]
            result = fire(port, pool, connections=clients_n, duration_s=3.0)
            out.append(
                {
                    "clients": clients_n,
                    "rps": round(result["rps"], 0),
                    "p50_ms": round(result["p50_ms"], 3),
                    "p99_ms": round(result["p99_ms"], 3),
                }
            )
            log(
                f"client ceiling at {clients_n}: {result['rps']:.0f} req/s, "
                f"p50 {result['p50_ms']:.2f} ms"
            )
    return out


def _profile(
    server: Server, work: Path, run_tag: str, first: int, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    seconds = args.profile_seconds
    pool = write_accepts(
        work / "profile.jsonl", first, math.ceil(rate * 2 * (seconds + 2)), run=run_tag
    )
    target = PROFILES_DIR / "settlement-latest.txt"
    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    holder: dict[str, Any] = {}
    pid = _one_worker(server)
    thread = threading.Thread(
        target=lambda: holder.update(cmd=profiling.record(pid, target, seconds=seconds, fmt="raw"))
    )
    log(f"profiling a settlement worker under load with py-spy ({seconds}s, 8 callers)")
    thread.start()
    fire(port_of(server), pool, connections=8, duration_s=seconds + 1)
    thread.join()
    if holder.get("cmd") is None:
        return {}
    summary = profiling.summarise_collapsed(target, top=20)
    profiling.keep_raw(target)
    target.unlink()
    return {
        "summary": summary,
        "process": "the server" if pid == server.pid else "one uvicorn worker process",
        "raw_command": shell_line(holder["cmd"]).replace(str(pid), "<pid>"),
    }


def _one_worker(server: Server) -> int:
    """With ``--workers`` > 1 the requests run in uvicorn's spawned worker processes, not in
    the parent: profile one of them (they run the same code on a share of the same load)."""
    for pid in descendants(server.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            return pid
    return server.pid
