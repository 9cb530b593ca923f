"""Provider INTENT → ASK against the floor (``bench.floor_app``), in one run.

One uvicorn worker each, pinned to one core; the load generator (``wrk -t1 -c16`` with
``bench/pact.lua``, or ``bench.loadgen``) on the other core(s). The two servers are measured in
alternating rounds (floor, provider, provider, floor, ...) so that drift on a shared machine hits
both alike; the ratio is the median over rounds of provider/floor requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from pact_schema import Keypair, verify_envelope
from pact_schema.keys import b58encode

from bench import bodies as bodies_mod
from bench import loadgen, profiling
from bench.common import (
    PROFILES_DIR,
    PYTHON,
    Server,
    free_port,
    http_get,
    log,
    machine_info,
    pinned,
    server_cpus,
    shell_line,
    utc_now_iso,
)

PROVIDER_KEY = Keypair(bytes(range(150, 182)))
TARGET_RATIO = 0.8
TARGET_P99_MS = 20.0


def provider_env() -> dict[str, str]:
    return {
        "PACT_PROVIDER_ENV": "development",
        "PACT_PROVIDER_SIGNING_KEY": b58encode(PROVIDER_KEY.seed),
        "PACT_PROVIDER_MAX_CLOCK_SKEW_MS": str(bodies_mod.CLOCK_SKEW_MS),
        "PACT_PROVIDER_LOG_LEVEL": "INFO",
    }


def make_servers(work: Path, cpus: str | None) -> dict[str, Server]:
    floor_port, provider_port = free_port(), free_port()
    floor_cmd = [PYTHON, "-m", "bench.floor_app", "--host", "127.0.0.1", "--port", str(floor_port)]
    provider_cmd = [
        PYTHON,
        "-m",
        "pact_provider.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(provider_port),
        "--workers",
        "1",
    ]
    env = provider_env()
    shown = {**env, "PACT_PROVIDER_SIGNING_KEY": "<fixed bench key>"}
    return {
        "floor": Server(
            "floor",
            pinned(floor_cmd, cpus),
            {},
            f"http://127.0.0.1:{floor_port}/healthz",
            work / "floor.log",
        ),
        "provider": Server(
            "provider",
            pinned(provider_cmd, cpus),
            env,
            f"http://127.0.0.1:{provider_port}/healthz",
            work / "provider.log",
            shown_env=shown,
        ),
    }


def _url(server: Server) -> str:
    return server.ready_url.replace("/healthz", "/pact")


def _port(server: Server) -> int:
    return int(server.ready_url.split(":")[2].split("/")[0])


def load(
    server: Server,
    bodies: Path,
    *,
    connections: int,
    duration_s: float,
    cpus: str | None,
    use_wrk: bool,
) -> dict[str, Any]:
    if use_wrk:
        threads = 1 if cpus is None else max(1, len(cpus.split(",")))
        return loadgen.run_wrk(
            _url(server),
            bodies,
            connections=connections,
            duration_s=duration_s,
            threads=threads,
            cpus=cpus,
        )
    return loadgen.run_asyncgen(
        _port(server),
        connections=connections,
        duration_s=duration_s,
        warmup_s=0.0,
        bodies=bodies,
        path="/pact",
        cpus=cpus,
    )


def _outcomes(server: Server) -> dict[str, float]:
    """``pact_provider_messages_total`` by (type, outcome, code) from the provider's /metrics."""
    status, text = http_get(server.ready_url.replace("/healthz", "/metrics"), timeout=5)
    found: dict[str, float] = {}
    if status != 200:
        return found
    pattern = re.compile(r"^pact_provider_messages_total\{(.*)\} ([0-9.e+]+)$")
    for line in text.decode().splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            key = f"{labels.get('message_type')}→{labels.get('outcome')}"
            if labels.get("code"):
                key += f" ({labels['code']})"
            found[key] = found.get(key, 0.0) + float(match.group(2))
    return found


def _check_reply(server: Server, body: bytes) -> str:
    """Send one body and say what came back (must be a provider-signed ASK)."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - loopback only
        _url(server), data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        reply = json.loads(resp.read())
    verified = verify_envelope(reply)
    return str(verified.message_raw.get("type"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    server_cpu, load_cpu = server_cpus() if args.pin else (None, None)
    use_wrk = loadgen.have_wrk() and not args.asyncgen
    work = Path(tempfile.mkdtemp(prefix="pact-bench-provider-"))
    bodies_path = work / "intents.txt"
    log(f"signing {args.bodies} distinct INTENT bodies → {bodies_path}")
    signed_at = bodies_mod.write_bodies(bodies_path, args.bodies, run=utc_now_iso()[11:19])
    first_body = bodies_path.read_bytes().split(b"\n", 1)[0]
    servers = make_servers(work, server_cpu)
    slices = max(1, round(args.duration / args.slice))
    slice_s = args.duration / slices
    runs: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    try:
        for server in servers.values():
            server.start()
        for name, server in servers.items():
            kind = _check_reply(server, first_body)
            if kind != "ASK":
                raise RuntimeError(f"{name} answered a bench INTENT with {kind}, not ASK")
            log(f"{name}: warm-up {args.warmup}s")
            load(
                server,
                bodies_path,
                connections=args.connections,
                duration_s=args.warmup,
                cpus=load_cpu,
                use_wrk=use_wrk,
            )
        log(f"measuring: {slices} alternating slices of {slice_s:.1f}s per server")
        order = ["floor", "provider"]
        for slice_no in range(1, slices + 1):
            for name in order if slice_no % 2 else list(reversed(order)):
                server = servers[name]
                cpu_before = cpu_seconds(server.pid)
                result = load(
                    server,
                    bodies_path,
                    connections=args.connections,
                    duration_s=slice_s,
                    cpus=load_cpu,
                    use_wrk=use_wrk,
                )
                result.update(
                    server=name,
                    slice=slice_no,
                    server_cpu_s=round(cpu_seconds(server.pid) - cpu_before, 3),
                )
                runs.append(result)
            pair = {r["server"]: r for r in runs[-2:]}
            log(
                f"  slice {slice_no}: floor {pair['floor']['rps']:.0f} req/s, provider "
                f"{pair['provider']['rps']:.0f} req/s (p99 {pair['provider']['p99_ms']:.1f} ms)"
            )
        outcomes = _outcomes(servers["provider"])
        if args.profile:
            profile = profile_provider(servers["provider"], bodies_path, args, load_cpu, use_wrk)
    finally:
        for server in servers.values():
            server.stop()
    summary = summarise(runs)
    non_ask = sum(v for k, v in outcomes.items() if k != "INTENT→ASK")
    summary["provider_outcomes"] = outcomes
    summary["pass"] = {
        "ratio": summary["ratio_rps"] >= TARGET_RATIO,
        "p99": summary["provider"]["p99_ms"] < TARGET_P99_MS,
        "non200": summary["provider"]["non200"] == 0 and summary["floor"]["non200"] == 0,
        "all_asks": non_ask == 0,
    }
    log(
        f"provider/floor: {summary['ratio_rps']:.3f} (req/s), {summary['ratio_cpu']:.3f} "
        f"(CPU per request); provider p99 {summary['provider']['p99_ms']:.1f} ms"
    )
    commands = {
        "floor server": shell_line(servers["floor"].cmd),
        "provider server": shell_line(servers["provider"].cmd, servers["provider"].shown_env),
        "load": shell_line(runs[0]["command"]),
        "bodies": f"bench.bodies.write_bodies(intents.txt, {args.bodies}) "
        f"(sent_at_ms = {signed_at}, expires +{bodies_mod.EXPIRY_MS} ms)",
    }
    for result in runs:
        result.pop("command", None)
    return {
        "suite": "provider",
        "label": args.label,
        "finished_utc": utc_now_iso(),
        "machine": machine,
        "config": {
            "connections": args.connections,
            "duration_s": args.duration,
            "slices": slices,
            "slice_s": round(slice_s, 2),
            "warmup_s": args.warmup,
            "distinct_bodies": args.bodies,
            "server_workers": 1,
            "server_cpus": server_cpu,
            "load_cpus": load_cpu,
            "load_tool": "wrk" if use_wrk else "bench.loadgen",
            "max_clock_skew_ms": bodies_mod.CLOCK_SKEW_MS,
            "targets": {"ratio_rps": TARGET_RATIO, "p99_ms": TARGET_P99_MS, "non200": 0},
        },
        "commands": commands,
        "runs": runs,
        "summary": summary,
        "profile": profile,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server: req/s over all slices, median slice p50/p99 (and the worst slice's p99),
    server CPU per request; ratios provider/floor, also per slice pair."""
    out: dict[str, Any] = {}
    for name in ("floor", "provider"):
        mine = [r for r in runs if r["server"] == name]
        requests = sum(r["requests"] for r in mine)
        seconds = sum(r["seconds"] for r in mine)
        cpu = sum(r.get("server_cpu_s", 0.0) for r in mine)
        out[name] = {
            "rps": requests / seconds if seconds else 0.0,
            "p50_ms": median(r["p50_ms"] for r in mine),
            "p99_ms": median(r["p99_ms"] for r in mine),
            "p99_worst_ms": max(r["p99_ms"] for r in mine),
            "requests": requests,
            "seconds": round(seconds, 2),
            "cpu_us_per_request": 1e6 * cpu / requests if requests else 0.0,
            "non200": sum(r["non200"] + r["socket_errors"] for r in mine),
        }
    pairs = []
    for n in sorted({r["slice"] for r in runs}):
        by = {r["server"]: r for r in runs if r["slice"] == n}
        pairs.append(by["provider"]["rps"] / by["floor"]["rps"])
    out["ratio_per_slice"] = [round(x, 3) for x in pairs]
    out["ratio_rps"] = round(out["provider"]["rps"] / out["floor"]["rps"], 3)
    cpu_p, cpu_f = out["provider"]["cpu_us_per_request"], out["floor"]["cpu_us_per_request"]
    out["ratio_cpu"] = round(cpu_f / cpu_p, 3) if cpu_p else 0.0
    return out


def profile_provider(
    server: Server, bodies: Path, args: argparse.Namespace, load_cpu: str | None, use_wrk: bool
) -> dict[str, Any]:
    """py-spy the provider under the same load: a raw profile (summarised) and a flame graph."""
    import threading

    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    tag = args.save_as or "provider"
    out: dict[str, Any] = {}
    for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
        target = PROFILES_DIR / f"{tag}.{suffix}"
        holder: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda h=holder, t=target, f=fmt: h.update(
                cmd=profiling.record(server.pid, t, seconds=args.profile_seconds, fmt=f)
            )
        )
        log(f"profiling the provider under load with py-spy ({fmt}, {args.profile_seconds}s)")
        thread.start()
        load(
            server,
            bodies,
            connections=args.connections,
            duration_s=args.profile_seconds + 2,
            cpus=load_cpu,
            use_wrk=use_wrk,
        )
        thread.join()
        if holder.get("cmd") is None:
            return {}
        out[f"{fmt}_file"] = str(target.relative_to(PROFILES_DIR.parent.parent.parent))
        out[f"{fmt}_command"] = shell_line(holder["cmd"]).replace(str(server.pid), "<provider pid>")
        if fmt == "raw":
            out["summary"] = profiling.summarise_collapsed(target)
            profiling.keep_raw(target)
            target.unlink()  # the summary is what we keep; the raw stacks are large
            out.pop("raw_file")
        elif target.stat().st_size > 1_000_000:
            target.unlink()
            out["flamegraph_file"] = "(deleted: over 1 MB)"
    return out
