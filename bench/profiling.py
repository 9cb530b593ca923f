"""py-spy under load: record a server process, keep a small flame graph, summarise top frames."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import log


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    if here.exists():
        return str(here)
    return shutil.which("py-spy")


def record(pid: int, out: Path, *, seconds: int, fmt: str, rate: int = 250) -> list[str] | None:
    """``py-spy record`` of ``pid`` for ``seconds`` (non-blocking: does not pause the server)."""
    exe = py_spy()
    if exe is None:
        log("py-spy not installed (uv sync --group bench): profile skipped")
        return None
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--nonblocking",
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        log(f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    return cmd


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/module.py:line)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = re.sub(r"^.*?/python3\.\d+/(site-packages/)?", "", where.rsplit(":", 1)[0])
    if "/src/" in path:
        path = path.split("/src/", 1)[1]
    return f"{name} ({path})"


PROJECT = ("pact_provider/", "pact_settlement/", "pact_schema/")
FRAMEWORK = (
    "uvicorn/",
    "starlette/",
    "fastapi/",
    "runpy",
    "asyncio/",
    "<frozen",
    "cli.py",
    "Middleware.__call__",
    "PactFastPath.__call__",
)


def keep_raw(path: Path) -> None:
    """Copy a raw profile to $BENCH_KEEP_RAW_DIR when set (for digging deeper by hand)."""
    folder = os.environ.get("BENCH_KEEP_RAW_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def summarise_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Top frames by self time (leaf), by inclusive time (framework plumbing that is on every
    stack left out), and the project's own functions by inclusive time, from a py-spy ``raw``
    file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if leaf.startswith(("select (", "poll (", "run_forever", "_run_once")) or "epoll" in leaf:
            idle += count
        self_time[leaf] += count
        for frame in set(frames):
            if not any(marker in frame for marker in FRAMEWORK):
                inclusive[frame] += count
            if any(marker in frame for marker in PROJECT) and not any(
                marker in frame for marker in FRAMEWORK
            ):
                project[frame] += count

    def pct(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "pct": round(100.0 * n / total, 1)}
            for frame, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "idle_pct": round(100.0 * idle / total, 1) if total else 0.0,
        "top_self": pct(self_time),
        "top_inclusive": pct(inclusive),
        "top_project": pct(project),
    }
