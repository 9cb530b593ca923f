"""Render ``bench/results/latest.md`` (+ ``latest.png``) from the newest JSON of each suite.

``provider.json``, ``settlement.json``, ``growth.json`` and ``streaming.json`` are each written
by their suite, so running one suite refreshes its section and keeps the others (each section
says when it ran).
``provider-before.json``, when present, is the provider measured before the performance fixes
(``python -m bench provider --save-as provider-before`` on that commit) and adds a before/after
table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import log

PASS, FAIL = "**PASS**", "**FAIL**"


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    if not path.exists():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    return doc


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else (PASS if flag else FAIL)


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _machine(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    extra = f", PostgreSQL {m['postgres']}" if "postgres" in m else ""
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg_before", []))
    return (
        f"{m['nproc']} CPUs (`nproc`), {m['cpu_model']}, {m['mem_gib']} GiB, Python "
        f"{m['python']}{extra}; load average before the run: {load}; commit "
        f"`{m['git_commit']}`; finished {doc['finished_utc']}"
    )


def _commands(commands: dict[str, str]) -> list[str]:
    lines = ["```bash"]
    for what, cmd in commands.items():
        lines += [f"# {what}", cmd]
    lines.append("```")
    return lines


def _profile_lines(profile: dict[str, Any], key: str = "top_self", n: int = 12) -> list[str]:
    summary = profile.get("summary") if profile else None
    if not summary:
        return ["(no profile: py-spy not installed — `uv sync --group bench`)"]
    rows = summary.get(key, [])[:n]
    out = [f"py-spy, {summary['samples']} samples"]
    out += ["", "| % of samples | frame |", "|---:|---|"]
    out += [f"| {r['pct']:.1f} | `{r['frame']}` |" for r in rows]
    return out


# --- sections ------------------------------------------------------------------------------


def provider_section(doc: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    s, c = doc["summary"], doc["config"]
    fl, pr = s["floor"], s["provider"]
    ok = s["pass"]
    lines = [
        "## Provider: INTENT → ASK against the floor",
        "",
        _machine(doc),
        "",
        f"One uvicorn worker per server (pinned to CPU {c['server_cpus']}), {c['connections']} "
        f"connections from `{c['load_tool']}` (CPU {c['load_cpus']}), {c['distinct_bodies']} "
        f"distinct pre-signed INTENTs, {c['duration_s']:.0f} s measured per server in "
        f"{c['slices']} alternating slices of {c['slice_s']} s after {c['warmup_s']:.0f} s of "
        "warm-up each. The **floor** (`bench/floor_app.py`) is a bare Starlette app that parses "
        "the body with `pact_schema.parse_json`, verifies the envelope with "
        "`pact_schema.verify_envelope` and signs the smallest valid ASK (the fields "
        "docs/protocol.md requires, fixed values) with `sign_message`. The "
        f"provider runs with `PACT_PROVIDER_MAX_CLOCK_SKEW_MS={c['max_clock_skew_ms']}` because "
        "the INTENTs are signed before the run.",
        "",
        "| server | req/s | p50 ms | p99 ms (median slice) | p99 ms (worst slice) "
        "| server CPU µs/request | non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in (("floor", fl), ("provider", pr)):
        lines.append(
            f"| {name} | {_f(row['rps'], 0)} | {_f(row['p50_ms'], 2)} | {_f(row['p99_ms'], 2)} "
            f"| {_f(row['p99_worst_ms'], 2)} | {_f(row['cpu_us_per_request'], 0)} "
            f"| {row['non200']} |"
        )
    lines += [
        "",
        "| target | value | result |",
        "|---|---:|---|",
        f"| provider req/s ≥ 0.8 x floor | **{s['ratio_rps']:.3f}** x "
        f"(per slice: {', '.join(f'{r:.2f}' for r in s['ratio_per_slice'])}) "
        f"| {_ok(ok['ratio'])} |",
        f"| provider p99 < 20 ms | {pr['p99_ms']:.2f} ms | {_ok(ok['p99'])} |",
        f"| zero non-200 replies | {pr['non200']} (floor {fl['non200']}) | {_ok(ok['non200'])} |",
        f"| every INTENT answered with an ASK (`/metrics`) | "
        f"{', '.join(f'{k}: {v:.0f}' for k, v in s['provider_outcomes'].items())} "
        f"| {_ok(ok['all_asks'])} |",
        f"| (CPU per request, floor ÷ provider: the same ratio without scheduling noise) "
        f"| {s['ratio_cpu']:.3f} | |",
        "",
    ]
    if before is not None:
        b = before["summary"]
        b_ratio = b.get("ratio_rps")
        lines += [
            "### Before and after the provider fixes",
            "",
            f"{before.get('label') or 'before: commit ' + before['machine']['git_commit']} "
            f"({before['finished_utc']}); "
            f"{doc.get('label') or 'after: commit ' + doc['machine']['git_commit']} "
            f"({doc['finished_utc']}). Same machine, same bench, each against its own floor run; "
            "absolute numbers drift with the machine's load, the ratio is what compares.",
            "",
            "| | floor req/s | provider req/s | provider ÷ floor | CPU ratio | provider p50 ms "
            "| provider p99 ms | provider CPU µs/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| before | {_f(b['floor']['rps'], 0)} | {_f(b['provider']['rps'], 0)} | "
            f"{_f(b_ratio, 3)} | {_f(b.get('ratio_cpu'), 3)} | {_f(b['provider']['p50_ms'], 2)} | "
            f"{_f(b['provider']['p99_ms'], 2)} | "
            f"{_f(b['provider'].get('cpu_us_per_request'), 0)} |",
            f"| after | {_f(fl['rps'], 0)} | {_f(pr['rps'], 0)} | {_f(s['ratio_rps'], 3)} | "
            f"{_f(s['ratio_cpu'], 3)} | {_f(pr['p50_ms'], 2)} | {_f(pr['p99_ms'], 2)} | "
            f"{_f(pr['cpu_us_per_request'], 0)} |",
            "",
        ]
    lines += ["Commands:", "", *_commands(doc["commands"]), ""]
    prof = doc.get("profile") or {}
    lines += ["### Provider profile under the same load", ""]
    if prof.get("flamegraph_file"):
        lines += [
            f"Flame graph: [`{Path(prof['flamegraph_file']).name}`]"
            f"(profiles/{Path(prof['flamegraph_file']).name}) "
            f"(`{prof.get('flamegraph_command', '')}`)",
            "",
        ]
    lines += ["Top frames by own time:", "", *_profile_lines(prof, "top_self")]
    lines += ["", "Top frames by inclusive time (server plumbing left out):", ""]
    lines += [*_profile_lines(prof, "top_inclusive", 15), ""]
    return lines


def settlement_section(doc: dict[str, Any]) -> list[str]:
    s, c = doc["summary"], doc["config"]
    workers = c.get("server_workers", 1)
    has_shape = any(lv.get("shape_tps") for lv in s["levels"])
    lines = [
        "## Settlement: ACCEPT → locked on Postgres against pgbench",
        "",
        _machine(doc),
        "",
        f"`pact-settlement serve --workers {workers}` ({workers} uvicorn worker process"
        f"{'es' if workers != 1 else ''}) on a fresh, migrated database `{c['database']}`; "
        f"{c['buyers']} funded buyers; every request a distinct `POST /v1/settlements` (a "
        "buyer-signed ACCEPT carrying the provider-signed ASK), each sent once, for "
        f"{c['seconds_per_level']} s per client count from `bench.loadgen` in separate "
        "processes. Right after each level, with the same client count, for the same time, on "
        "the same server: `pgbench` with its built-in TPC-B-like script (5 statements), the "
        "issue's ceiling and target"
        + (
            f", then `pgbench -M prepared -f {c.get('shape_script', 'bench/create_shape.sql')}`, "
            "**the same writes a ledger-rail create performs** (19 statements over 8 tables, "
            "on the migrated schema with its constraints and triggers, rows as big as the "
            f"service's, {c.get('shape_buyers', 128)} buyer accounts no two clients share): "
            "the fair ceiling for this transaction shape, reported without a target"
            if has_shape
            else ""
        )
        + f". Pinning: {c['pinning']}.",
        "",
        "| callers | creates/s | p50 ms | p99 ms | non-2xx | server CPU ms/create "
        "| Postgres CPU ms/create | creates ÷ same-shape tps |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in s["levels"]:
        lines.append(
            f"| {lv['clients']} | {_f(lv['settlement_rps'])} | {_f(lv['p50_ms'])} | "
            f"{_f(lv['p99_ms'])} | {lv['non2xx']} | {_f(lv['cpu_ms_per_create'])} | "
            f"{_f(lv.get('postgres_cpu_ms_per_create'), 2)} | {_f(lv.get('ratio_shape'), 3)} |"
        )
    rt = s.get("round_trips") or {}
    if rt:
        lines += [
            "",
            f"**Round trips per create: {_f(rt['round_trips_per_create'])}**; **Python CPU per "
            f"create: {_f(rt['python_cpu_ms_per_create'], 2)} ms** ({rt['creates']} creates, one "
            "worker, one caller, the service's database connections relayed through "
            "`bench/rtproxy.py`, which counts each time a client speaks after the server; "
            f"{_f(rt['idle_round_trips_per_s'])}/s of the idle service's own polls subtracted). "
            "Both depend on the code, not on the machine's load. Postgres CPU per create sums "
            "the service's backends (`application_name` pact-settlement) from `/proc`.",
        ]
    lines += [
        "",
        "| callers | TPC-B tps | p50 ms | p99 ms | failed | creates ÷ TPC-B tps | target ≥ 0.5 "
        "| same-shape tps | p50 ms | p99 ms | failed | creates ÷ same-shape tps (fair ceiling) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for lv in s["levels"]:
        target = _ok((lv["ratio"] or 0) >= 0.5) if lv["clients"] in (8, 32) else "—"
        lines.append(
            f"| {lv['clients']} | {_f(lv['pgbench_tps'], 0)} | {_f(lv['pgbench_p50_ms'], 2)} | "
            f"{_f(lv['pgbench_p99_ms'], 2)} | {lv.get('pgbench_failed', '—')} | "
            f"{_f(lv['ratio'], 3)} | {target} | {_f(lv.get('shape_tps'), 0)} | "
            f"{_f(lv.get('shape_p50_ms'), 2)} | {_f(lv.get('shape_p99_ms'), 2)} | "
            f"{lv.get('shape_failed', '—')} | {_f(lv.get('ratio_shape'), 3)} |"
        )
    over = doc.get("client_overhead") or []
    if over:
        lines += [
            "",
            "Load generator's own ceiling (same client, concurrency and request bytes against "
            "`bench/null_server.py`, which answers at once):",
            "",
            "| callers | req/s | p50 ms | p99 ms |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {o['clients']} | {_f(o['rps'], 0)} | {_f(o['p50_ms'], 3)} | {_f(o['p99_ms'], 3)} |"
            for o in over
        ]
    lines += ["", "Commands:", "", *_commands(doc["commands"]), ""]
    prof = doc.get("profile") or {}
    where = prof.get("process", "the server")
    lines += [
        "### Settlement profile (8 callers)",
        "",
        f"py-spy on {where}. The service's own functions by inclusive time:",
        "",
        *_profile_lines(prof, "top_project", 15),
    ]
    lines += ["", "Top frames by own time:", "", *_profile_lines(prof, "top_self", 10), ""]
    return lines


def streaming_section(doc: dict[str, Any]) -> list[str]:
    s, c, r = doc["summary"], doc["settings"], doc["results"]
    one, many, tick = r["one_stream"], r["concurrent"], r["per_tick_reference"]

    def row(label: str, x: dict[str, Any], calls: str) -> str:
        st = x["settlement"]
        journal = ", ".join(f"{k} {v}" for k, v in st["journal_transactions"].items())
        return (
            f"| {label} | {x['ticks']:,} | {_f(x['ticks_per_s'])} | "
            f"{_f(x['server_cpu_ms_per_tick'], 3)} | {_f(x.get('buyer_cpu_ms_per_tick'), 3)} | "
            f"{st['settlements']:,} | {journal} | {_f(st['rail_steps_per_settlement'], 2)} | "
            f"{calls} |"
        )

    per_stream = f"{_f(one['provider_settlement_calls_per_stream'], 0)} per stream"
    reference_tx = s["journal_transactions_per_tick_reference"] * tick["ticks"]
    lines = [
        "## Streaming: ticks through the provider and settlement, against a payment per tick",
        "",
        _machine(doc),
        "",
        "`pact-provider serve` (1 worker, selling `bench.stream_goods`, a 32-byte chunk per "
        f"tick, checkpointing every {c['checkpoint_ticks']} ticks) in front of "
        "`pact-settlement serve` (1 worker) on a fresh migrated database; the buyers are "
        "`StreamBuyer`s in the bench process (every chunk's signature and seq checked, one "
        "signed cumulative voucher posted per tick, tick_ms 1). **Per-tick payments** is the "
        "reference's design, each tick paid separately: the same number of ticks as the one "
        "stream, each its own settlement created (its one-tick price locked) and released (closed "
        "with its voucher), one after another, pre-signed.",
        "",
        "| run | ticks | ticks/s | server CPU ms/tick | buyer CPU ms/tick | settlements | "
        "journal transactions | rail steps per settlement | provider→settlement calls |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
        row("one stream", one, per_stream),
        row(
            f"{many['streams']} concurrent streams x {many['ticks_each']} ticks",
            many,
            f"{_f(many['provider_settlement_calls_per_stream'], 1)} per stream",
        ),
        row("per-tick payments (reference design)", tick, f"2 per tick ({2 * tick['ticks']:,})"),
        "",
        f"One stream runs **{_f(s['speedup_one_stream'], 1)}x** the ticks/s of per-tick "
        f"payments and costs settlement {_f(s['journal_transactions_per_stream'], 0)} journal "
        f"transactions instead of {reference_tx:,.0f} "
        f"(**{_f(s['journal_transactions_ratio'], 0)}x** fewer) for {tick['ticks']:,} ticks; "
        "a tick costs the two servers "
        f"**{_f(s.get('server_cpu_per_tick_ratio'), 1)}x** less CPU. The concurrent rate is "
        "bounded by the buyers' one process (see its CPU per tick), not by the services.",
        "",
        "Commands:",
        "",
        *_commands(doc["commands"]),
        "",
    ]
    return lines


def growth_section(doc: dict[str, Any]) -> list[str]:
    s, c = doc["summary"], doc["config"]
    small, large = c["sizes"][0], c["sizes"][-1]
    lines = [
        f"## Cost growth: {small:,} vs {large:,} settlements",
        "",
        _machine(doc),
        "",
        f"Two databases bulk-loaded to {small:,} and {large:,} settlements (with their events, "
        "idempotency keys, rail operations and transcripts), one `pact-settlement serve` each, "
        f"measured in {c['rounds']} alternating rounds with {c['callers']} callers: creates "
        "(new signed ACCEPTs), `GET /v1/settlements/{intent_id}` of random existing rows, and "
        "`GET /v1/settlements?limit=50&cursor=…` from random positions.",
        "",
        f"| operation | p50 ms @{small:,} | p99 ms @{small:,} | p50 ms @{large:,} | "
        f"p99 ms @{large:,} | p99 growth | target ≤ {c['targets']['growth_p99']} |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for op in s["ops"]:
        lines.append(
            f"| {op['op']} | {_f(op[f'p50_{small}'], 2)} | {_f(op[f'p99_{small}'], 2)} | "
            f"{_f(op[f'p50_{large}'], 2)} | {_f(op[f'p99_{large}'], 2)} | "
            f"{op['growth_p99']:.2f}x | {_ok(op['growth_p99'] <= c['targets']['growth_p99'])} |"
        )
    loads = doc.get("bulk_load_seconds", {})
    if loads:
        lines += [
            "",
            "Bulk load (seconds): "
            + "; ".join(f"{int(k):,} rows: {v.get('total', 0)} s" for k, v in loads.items()),
        ]
    lines += ["", "Commands:", "", *_commands(doc["commands"]), ""]
    lines += [
        f"### EXPLAIN (ANALYZE, BUFFERS) of the hot queries at {large:,} rows",
        "",
        "Captured from the service's own repository code (the SQL it sends), then "
        "explained with the same parameters.",
        "",
    ]
    for e in doc.get("explain", []):
        flags = []
        if e.get("seq_scan"):
            flags.append("**sequential scan**")
        removed = [
            int(x.split(":")[1]) for x in e["plan"].splitlines() if "Rows Removed by Filter:" in x
        ]
        if removed and max(removed) > 1000:
            flags.append(f"**{max(removed):,} rows read and dropped by a filter**")
        lines += [
            f"**{e['query']}**" + (" — " + ", ".join(flags) if flags else ""),
            "",
            "```",
            e["plan"],
            "```",
            "",
        ]
    return lines


# --- chart ---------------------------------------------------------------------------------


def chart(
    results: Path,
    provider: dict[str, Any] | None,
    settlement: dict[str, Any] | None,
    growth: dict[str, Any] | None,
    before: dict[str, Any] | None,
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed (uv sync --group bench): no chart")
        return None
    panels = [p for p in (provider, settlement, growth) if p is not None]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=90)
    axes = list(axes) if len(panels) > 1 else [axes]
    i = 0
    if provider is not None:
        ax = axes[i]
        i += 1
        s = provider["summary"]
        labels, values, colors = ["after"], [s["ratio_rps"]], ["#2b7bb9"]
        if before is not None:
            labels.insert(0, "before")
            values.insert(0, before["summary"]["ratio_rps"])
            colors.insert(0, "#d98c3f")
        bars = ax.bar(labels, values, color=colors)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.axhline(0.8, color="#c0392b", lw=1, ls="--", label="target 0.8")
        ax.axhline(1.0, color="#999999", lw=1, label="floor")
        ax.set_ylim(0, 1.15)
        ax.set_title("provider ÷ floor, INTENT→ASK req/s", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    if settlement is not None:
        ax = axes[i]
        i += 1
        levels = settlement["summary"]["levels"]
        xs = [str(lv["clients"]) for lv in levels]
        series = [
            ("settlement creates/s", "settlement_rps", "#2b7bb9"),
            ("create-shape tps (fair ceiling)", "shape_tps", "#d98c3f"),
            ("TPC-B tps", "pgbench_tps", "#999999"),
        ]
        series = [x for x in series if any(lv.get(x[1]) for lv in levels)]
        width = 0.8 / len(series)
        for n, (label, key, color) in enumerate(series):
            offset = (n - (len(series) - 1) / 2) * width
            bars = ax.bar(
                [p + offset for p in range(len(xs))],
                [lv.get(key) or 0 for lv in levels],
                width,
                label=label,
                color=color,
            )
            if key == "settlement_rps":
                ratios = [
                    f"{lv['ratio']:.2f}/{lv['ratio_shape']:.2f}"
                    if lv.get("ratio_shape") is not None and lv.get("ratio") is not None
                    else (f"{lv['ratio']:.3f}" if lv.get("ratio") is not None else "")
                    for lv in levels
                ]
                ax.bar_label(bars, labels=ratios, fontsize=6)
        ax.set_xticks(list(range(len(xs))), xs)
        ax.set_yscale("log")
        top = max((lv.get(key) or 0) for _, key, _ in series for lv in levels)
        ax.set_ylim(1, max(10.0, top * 8))  # room above the bars for the legend
        ax.set_xlabel("concurrent callers")
        workers = settlement["config"].get("server_workers", 1)
        ax.set_title(
            f"ACCEPT→locked vs pgbench ({workers} worker{'s' if workers != 1 else ''})\n"
            "labels: ÷TPC-B / ÷same-shape",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper left", ncols=2)
    if growth is not None:
        ax = axes[i]
        sizes = growth["config"]["sizes"]
        ops = growth["summary"]["ops"]
        width = 0.38
        pos = range(len(ops))
        ax.bar(
            [p - width / 2 for p in pos],
            [o[f"p99_{sizes[0]}"] for o in ops],
            width,
            label=f"{sizes[0]:,} rows",
            color="#999999",
        )
        ax.bar(
            [p + width / 2 for p in pos],
            [o[f"p99_{sizes[-1]}"] for o in ops],
            width,
            label=f"{sizes[-1]:,} rows",
            color="#2b7bb9",
        )
        ax.set_xticks(list(pos), [o["op"] for o in ops])
        ax.set_ylabel("p99 ms")
        ax.set_title("p99 vs table size", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = results / "latest.png"
    fig.savefig(out)
    plt.close(fig)
    return out


# --- entry points ----------------------------------------------------------------------------


def render(results: Path) -> Path:
    provider = _load(results, "provider")
    settlement = _load(results, "settlement")
    growth = _load(results, "growth")
    streaming = _load(results, "streaming")
    before = _load(results, "provider-before")
    lines = [
        "# Benchmark results (latest)",
        "",
        "Written by `python -m bench` (`make bench`); each section comes from the newest run of "
        "its suite (`bench/results/<suite>.json`). These machines are shared and noisy: compare "
        "the **ratios**, which are measured inside one run, not the absolute numbers.",
        "",
    ]
    if (results / "findings.md").exists():
        lines += [
            "What the numbers mean, what was fixed and what is left: [findings.md](findings.md).",
            "",
        ]
    png = chart(results, provider, settlement, growth, before)
    if png is not None:
        lines += [f"![benchmarks]({png.name})", ""]
    lines += ["| suite | target | result |", "|---|---|---|"]
    if provider:
        for key, label in (
            ("ratio", "provider ≥ 0.8 x floor req/s"),
            ("p99", "provider p99 < 20 ms"),
            ("non200", "zero non-200"),
            ("all_asks", "every INTENT → ASK"),
        ):
            lines.append(f"| provider | {label} | {_ok(provider['summary']['pass'][key])} |")
    if settlement:
        for key, flag in settlement["summary"]["pass"].items():
            lines.append(
                f"| settlement | ≥ 0.5 x pgbench (TPC-B) tps at {key.split('_c')[1]} callers "
                f"| {_ok(flag)} |"
            )
        shaped = [lv for lv in settlement["summary"]["levels"] if lv.get("ratio_shape")]
        if shaped:
            values = ", ".join(f"{lv['ratio_shape']:.2f} at {lv['clients']}" for lv in shaped)
            lines.append(
                "| settlement | creates ÷ same-shape pgbench tps (`create_shape.sql`, the fair "
                f"ceiling; reported, no target) | {values} |"
            )
    if growth:
        for key, flag in growth["summary"]["pass"].items():
            lines.append(f"| growth | {key.split('_')[1]} p99 at 1M ≤ 1.5 x at 10k | {_ok(flag)} |")
    if streaming:
        ss = streaming["summary"]
        lines.append(
            "| streaming | settlement transactions constant per stream (lock + one release) "
            f"| {_ok(ss['pass']['constant_settlement_transactions'])} |"
        )
        lines.append(
            "| streaming | one stream faster than a payment per tick (reference design) | "
            f"{_ok(ss['pass']['faster_than_per_tick_payments'])}: "
            f"{_f(ss['speedup_one_stream'], 1)}x |"
        )
    lines.append("")
    if provider:
        lines += provider_section(provider, before)
    if settlement:
        lines += settlement_section(settlement)
    if growth:
        lines += growth_section(growth)
    if streaming:
        lines += streaming_section(streaming)
    out = results / "latest.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out


def failed_targets(results: Path, suites: list[str]) -> list[str]:
    failed = []
    for suite in suites:
        doc = _load(results, suite)
        if doc is None:
            continue
        failed += [f"{suite}.{k}" for k, v in doc["summary"].get("pass", {}).items() if not v]
    return failed
