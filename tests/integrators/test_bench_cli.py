"""`make bench` runs `python -m bench` with no suite named: every suite, never a usage error."""

from __future__ import annotations

import subprocess
import sys

from fixtures.integrators import ROOT
from fixtures.waits import HANG_GUARD_S


def _bench_help(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from bench.__main__ import build_parser; "
        "print(build_parser().parse_args(sys.argv[1:]).suites)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )


def test_no_suite_named_means_all_and_named_suites_are_kept() -> None:
    assert _bench_help().stdout.strip() == "all"
    named = _bench_help("provider", "streaming")
    assert named.stdout.strip() == "['provider', 'streaming']", named.stderr


def test_an_unknown_suite_is_a_usage_error() -> None:
    wrong = _bench_help("nonsense")
    assert wrong.returncode == 2
    assert "invalid choice: 'nonsense'" in wrong.stderr
