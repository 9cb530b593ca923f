"""Run the settlement and the provider as real processes (as test_end_to_end.py does)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["clean_env", "free_port", "process"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PACT_SETTLEMENT_", "PACT_PROVIDER_"))
    }


@contextmanager
def process(module: str, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``python -m <module> serve`` on a free port until ``/healthz`` answers; SIGTERM after.

    Logs go to a file in ``cwd``, not a pipe: an unread pipe fills up with JSON log lines and
    then blocks the server in the middle of a request.
    """
    port = free_port()
    log_path = cwd / f"{module}-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{module} exited: {log_path.read_text()[-4000:]}")
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{module} never answered /healthz: {log_path.read_text()[-4000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        stop(proc, timeout_s=20)


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited after ``timeout_s``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
