"""Real processes for the seller tests: the example weather API, settlement and providers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "weather_seller"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PACT_SETTLEMENT_", "PACT_PROVIDER_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE), env.get("PYTHONPATH")]))
    return env | extra


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crash."""
        self.proc.kill()
        self.proc.wait()


@contextmanager
def serve(
    argv: Sequence[str], env: dict[str, str], cwd: Path, *, health: str = "/healthz"
) -> Iterator[Served]:
    """``python <argv> --port N`` until ``health`` answers; SIGTERM (or SIGKILL) after.
    Logs go to a file: an unread pipe would fill up and block the server."""
    port = free_port()
    log_path = cwd / f"{argv[1]}-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
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
                raise AssertionError(f"{argv} exited: {log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}{health}", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} never answered: {log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield Served(url, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
