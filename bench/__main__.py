"""``python -m bench [provider|settlement|growth|streaming|all] [options]`` (what ``make bench``
runs)."""

from __future__ import annotations

import argparse
import os
import sys

from bench.common import RESULTS_DIR, log, write_json

SUITES = ("provider", "settlement", "growth", "streaming")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "suites",
        nargs="*",
        # A string, not ["all"]: Python 3.11's argparse checks an empty '*' positional's
        # default against the choices as one value (a list is never among them).
        default="all",
        choices=[*SUITES, "all", "report"],
        help="what to run (default all); 'report' only re-renders latest.md",
    )
    parser.add_argument("--label", default="", help="a label stored with the results")
    parser.add_argument(
        "--save-as",
        default=None,
        help="write the provider results to bench/results/<NAME>.json instead "
        "(e.g. provider-before) and leave latest.md alone",
    )
    p = parser.add_argument_group("provider")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per server (default 10)"
    )
    p.add_argument(
        "--slice",
        type=float,
        default=1.0,
        help="the measured time is cut into slices of this length, alternating "
        "floor and provider, so drift on a shared machine hits both alike",
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server")
    p.add_argument("--bodies", type=int, default=16384, help="distinct signed INTENTs")
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the server to core 0 and the load generator to the others",
    )
    p.add_argument("--asyncgen", action="store_true", help="use bench.loadgen even if wrk exists")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-seconds", type=int, default=5)
    s = parser.add_argument_group("settlement and growth")
    s.add_argument("--pg-host", default="127.0.0.1")
    s.add_argument("--pg-port", type=int, default=5432)
    s.add_argument("--pg-user", default="postgres")
    s.add_argument("--database", default="pact_bench")
    s.add_argument("--clients", default="1,8,32", help="concurrent callers")
    s.add_argument(
        "--accepts",
        type=int,
        default=0,
        help="ACCEPTs per client count (default: sized to ~10 s per level)",
    )
    s.add_argument("--pg-seconds", type=int, default=10, help="pgbench -T per client count")
    s.add_argument(
        "--settlement-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="pact-settlement serve --workers for the settlement suite (default: os.cpu_count(), "
        "here %(default)s)",
    )
    s.add_argument("--growth-sizes", default="10000,1000000")
    s.add_argument(
        "--growth-samples",
        type=int,
        default=900,
        help="reads per size (creates: half, list pages: a fifth; over 3 rounds)",
    )
    t = parser.add_argument_group("streaming")
    t.add_argument(
        "--stream-ticks",
        type=int,
        default=1000,
        help="ticks of the one stream, and of the per-tick payments compared with it",
    )
    t.add_argument("--streams", type=int, default=100, help="concurrent streams")
    t.add_argument("--stream-ticks-each", type=int, default=50, help="ticks of each of them")
    t.add_argument(
        "--stream-checkpoint-ticks",
        type=int,
        default=100,
        help="the provider's PACT_PROVIDER_STREAM_CHECKPOINT_TICKS",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    suites = [args.suites] if isinstance(args.suites, str) else args.suites
    wanted = list(SUITES) if "all" in suites else [s for s in suites if s != "report"]
    for suite in wanted:
        log(f"suite {suite}")
        if suite == "provider":
            from bench import provider_bench

            doc = provider_bench.run(args)
        elif suite == "settlement":
            from bench import settlement_bench

            doc = settlement_bench.run(args)
        elif suite == "streaming":
            from bench import streaming_bench

            doc = streaming_bench.run(args)
        else:
            from bench import growth_bench

            doc = growth_bench.run(args)
        name = args.save_as if (args.save_as and suite == "provider") else suite
        write_json(RESULTS_DIR / f"{name}.json", doc)
        log(f"wrote bench/results/{name}.json")
    from bench import report

    path = report.render(RESULTS_DIR)
    log(f"wrote {path.relative_to(RESULTS_DIR.parent.parent)}")
    failed = report.failed_targets(RESULTS_DIR, wanted)
    if failed:
        log("targets missed: " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
