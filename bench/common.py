"""Shared plumbing: machine facts, free ports, pinned server processes, percentiles."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
PROFILES_DIR = RESULTS_DIR / "profiles"
PYTHON = sys.executable


def log(message: str) -> None:
    """Progress on stderr (stdout stays free for results)."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def cpu_count() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Facts that make the numbers interpretable (and say how noisy the machine was)."""
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        nproc = str(cpu_count())
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": int(nproc.strip() or 0),
        "cpu_model": _cpu_model(),
        "mem_gib": mem_gib,
        "loadavg_before": list(os.getloadavg()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_paths": len([p for p in _git("status", "--porcelain").splitlines() if p]),
        "date_utc": utc_now_iso(),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` under ``taskset -c cpus`` when there is something to pin to."""
    if cpus is None or shutil.which("taskset") is None or cpu_count() < 2:
        return list(cmd)
    return ["taskset", "-c", cpus, *cmd]


def server_cpus() -> tuple[str | None, str | None]:
    """(server CPUs, load-generator CPUs): on 2+ cores the server gets core 0, load the rest."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None, None
    return str(cores[0]), ",".join(str(c) for c in cores[1:])


def shell_line(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """A copy-pasteable rendering of a command (relative to the repo root)."""

    def quote(part: str) -> str:
        text = "python" if part == PYTHON else part.replace(str(ROOT) + "/", "")
        if text.startswith(".venv/bin/") or text.endswith("/bin/py-spy"):
            text = text.rsplit("/", 1)[1]
        if not text or any(c in text for c in " \"'$;&|<>(){}*?"):
            return "'" + text.replace("'", "'\\''") + "'"
        return text

    prefix = " ".join(f"{k}={quote(v)}" for k, v in (env or {}).items())
    body = " ".join(quote(p) for p in cmd)
    return f"{prefix} {body}".strip()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    """A server subprocess (its own process group), stdout/stderr to ``log_path``."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    shown_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                status, _ = http_get(self.ready_url, timeout=1.0)
                if status < 500:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready at {self.ready_url}: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every live process below it (uvicorn's worker processes),
    plus what they reaped, in seconds. Compare two readings taken while the same processes
    live."""
    ticks = 0
    for p in (pid, *descendants(pid)):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100.0 * len(sorted_values))))
    return float(sorted_values[rank - 1])


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{label}: {time.perf_counter() - started:.1f}s")


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
