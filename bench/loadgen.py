"""Load generators: ``wrk`` (Debian's) with ``bench/pact.lua``, or a small multi-process asyncio
HTTP/1.1 client when ``wrk`` is not installed (and for count-based runs such as settlement,
where every request may be sent once only).

The asyncio client keeps one keep-alive connection per virtual user, sends pre-rendered request
bytes and reads ``Content-Length`` replies; latencies are measured per request with
``perf_counter_ns``. Worker processes start together at an agreed wall-clock instant.

    python -m bench.loadgen --port 8000 --bodies bodies.txt --path /pact -c 16 -d 10 -w 2
    python -m bench.loadgen --port 8001 --requests reqs.jsonl -c 8 --count   # each once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, PYTHON, percentile, pinned

LUA_SCRIPT = BENCH_DIR / "pact.lua"


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


# --- wrk ------------------------------------------------------------------------------------


def wrk_command(
    url: str, bodies: Path, *, connections: int, duration_s: float, threads: int = 1
) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, math.ceil(duration_s))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies),
    ]


def run_wrk(
    url: str,
    bodies: Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    cpus: str | None = None,
) -> dict[str, Any]:
    cmd = pinned(
        wrk_command(url, bodies, connections=connections, duration_s=duration_s, threads=threads),
        cpus,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return {
        "tool": "wrk",
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "non200": raw["non200"],
        "non200_statuses": raw["non200_statuses"].split(),
        "socket_errors": errors,
        "command": cmd,
    }


# --- asyncio client ---------------------------------------------------------------------------


def render_request(
    method: str, path: str, port: int, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    merged = {"Content-Type": "application/json", **(headers or {})}
    lines += [f"{k}: {v}" for k, v in merged.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def load_requests(args: argparse.Namespace) -> list[bytes]:
    if args.bodies:
        return [
            render_request("POST", args.path, args.port, line)
            for line in Path(args.bodies).read_bytes().splitlines()
            if line.strip()
        ]
    out = []
    for line in Path(args.requests).read_text().splitlines():
        if not line.strip():
            continue
        spec = json.loads(line)
        body = spec.get("body", "")
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        out.append(
            render_request(
                spec.get("method", "POST"), spec["path"], args.port, data, spec.get("headers")
            )
        )
    return out


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _worker_main(args: argparse.Namespace) -> dict[str, Any]:
    requests = load_requests(args)
    # --count: every request at most once (this process takes every procs-th one); stops when
    # they are all answered or when the duration is over, whichever comes first.
    mine = requests[args.proc_index :: args.procs] if args.count else requests
    statuses: Counter[int] = Counter()
    latencies: list[int] = []
    errors = 0
    now = time.time()
    if args.start_at > now:
        await asyncio.sleep(args.start_at - now)
    t0 = time.perf_counter()
    measure_from = t0 + args.warmup
    measure_to = measure_from + args.duration if args.duration > 0 else math.inf
    first_ns: int | None = None
    last_ns = 0
    cursor = 0 if args.count else (args.proc_index * 7919) % max(1, len(mine))

    def next_request() -> bytes | None:
        nonlocal cursor
        if args.count:
            if cursor >= len(mine):
                return None
            request = mine[cursor]
            cursor += 1
            return request
        cursor = (cursor + 1) % len(mine)
        return mine[cursor]

    async def user() -> None:
        nonlocal errors, first_ns, last_ns
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while time.perf_counter() < measure_to:
                request = next_request()
                if request is None:
                    return
                started = time.perf_counter_ns()
                try:
                    status = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
                    continue
                ended = time.perf_counter_ns()
                if started / 1e9 >= measure_from:
                    statuses[status] += 1
                    latencies.append(ended - started)
                    first_ns = started if first_ns is None else min(first_ns, started)
                    last_ns = max(last_ns, ended)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(user() for _ in range(args.connections)))
    return {
        "latencies_ns": latencies,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "first_ns": first_ns or 0,
        "last_ns": last_ns,
        "window_s": args.duration,
        "unsent": max(0, len(mine) - cursor) if args.count else 0,
    }


def _run_worker(args: argparse.Namespace) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_worker_main(args))
    sys.stdout.write(json.dumps(result))


def summarise(parts: Sequence[dict[str, Any]], *, count_mode: bool) -> dict[str, Any]:
    latencies = sorted(x for p in parts for x in p["latencies_ns"])
    statuses: Counter[str] = Counter()
    for p in parts:
        statuses.update(p["statuses"])
    firsts = [p["first_ns"] for p in parts if p["latencies_ns"]]
    lasts = [p["last_ns"] for p in parts if p["latencies_ns"]]
    span = (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0
    # a fixed window unless the requests ran out first (count mode): then the measured span
    window = float(parts[0]["window_s"] or 0.0)
    ran_out = count_mode and all(p.get("unsent", 0) == 0 for p in parts)
    seconds = span if (ran_out or window <= 0) else window
    total = len(latencies)
    ms = [x / 1e6 for x in latencies]
    return {
        "tool": "bench.loadgen",
        "requests": total,
        "seconds": round(seconds, 3),
        "rps": total / seconds if seconds else 0.0,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "p999_ms": percentile(ms, 99.9),
        "max_ms": ms[-1] if ms else 0.0,
        "mean_ms": sum(ms) / total if total else 0.0,
        "non200": total - statuses.get("200", 0) - statuses.get("201", 0),
        "unsent": sum(p.get("unsent", 0) for p in parts),
        "statuses": dict(statuses),
        "socket_errors": sum(p["errors"] for p in parts),
    }


def run_asyncgen(
    port: int,
    *,
    connections: int,
    duration_s: float = 10.0,
    warmup_s: float = 0.0,
    bodies: Path | None = None,
    path: str = "/pact",
    requests: Path | None = None,
    count: bool = False,
    procs: int | None = None,
    cpus: str | None = None,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """Run the asyncio client in ``procs`` processes (each with its share of connections)."""
    procs = procs or max(1, min(connections, len(os.sched_getaffinity(0)) - 1 or 1))
    procs = min(procs, connections)
    share = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    start_at = time.time() + 1.0
    base = [
        PYTHON,
        "-m",
        "bench.loadgen",
        "--worker",
        "--port",
        str(port),
        "--start-at",
        repr(start_at),
        "--procs",
        str(procs),
        "--duration",
        str(duration_s),
        "--warmup",
        str(warmup_s),
    ]
    if bodies is not None:
        base += ["--bodies", str(bodies), "--path", path]
    else:
        assert requests is not None
        base += ["--requests", str(requests)]
    if count:
        base.append("--count")
    children = [
        subprocess.Popen(
            pinned([*base, "--proc-index", str(i), "-c", str(share[i])], cpus),
            stdout=subprocess.PIPE,
            cwd=BENCH_DIR.parent,
        )
        for i in range(procs)
    ]
    parts = []
    for child in children:
        out, _ = child.communicate(timeout=duration_s + warmup_s + 600)
        if child.returncode != 0:
            raise RuntimeError(f"loadgen worker failed with {child.returncode}")
        parts.append(json.loads(out))
    result = summarise(parts, count_mode=count)
    if keep_latencies:
        result["latencies_ms"] = sorted(x / 1e6 for p in parts for x in p["latencies_ns"])
    result["command"] = [*base[:3], "-c", str(connections), "(", str(procs), "processes )"]
    result["procs"] = procs
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", help="file of request bodies, one per line (POST --path)")
    parser.add_argument("--path", default="/pact")
    parser.add_argument("--requests", help="JSON lines: {method, path, headers, body}")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="0: no time limit")
    parser.add_argument("-w", "--warmup", type=float, default=2.0)
    parser.add_argument("--count", action="store_true", help="send every request once, then stop")
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proc-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.bodies or args.requests):
        parser.error("--bodies or --requests is required")
    if args.worker:
        _run_worker(args)
        return
    result = run_asyncgen(
        args.port,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        bodies=Path(args.bodies) if args.bodies else None,
        path=args.path,
        requests=Path(args.requests) if args.requests else None,
        count=args.count,
        procs=args.procs,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=2))


if __name__ == "__main__":
    main()
