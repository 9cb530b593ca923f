"""Helpers of the integrator's-eye tests (shared through conftest.py): the `make run` stack
as a newcomer starts it, and the tools that read the services' documents.

The stack is ``scripts/dev_stack.py run`` itself (what ``make run`` runs) on free ports with its
state in a temporary folder (``PACT_DEV_DIR``), so these tests exercise the real script.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_STACK = ROOT / "scripts" / "dev_stack.py"
NODE_BIN = Path(__file__).parent / "node" / "node_modules" / ".bin"
BANNER = "Pact suite is running"
# dev_stack waits up to 60 s for each service to turn ready; past both, it has given up.
STACK_START_BOUND_S = 2 * 60 + 30
STACK_STOP_BOUND_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def user_env(**pact: str) -> dict[str, str]:
    """The environment a user runs `make run` in: no PACT_* of ours, plus ``pact``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_")}
    return env | pact


@dataclass
class Stack:
    """A running `make run` stack (or one that refused to start)."""

    process: subprocess.Popen[bytes]
    provider_url: str
    settlement_url: str
    dev_dir: Path
    lines: list[str] = field(default_factory=list)
    ended: bool = False
    _seen: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            with self._seen:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self.ended = True
            self._seen.notify_all()

    def wait_for(self, text: str, within_s: float) -> bool:
        """True once a line holds ``text``; False if the output ended first or time ran out."""
        deadline = time.monotonic() + within_s
        with self._seen:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    return False
                self._seen.wait(remaining)
        return True

    def wait_ended(self, within_s: float) -> None:
        """Until every line of output has been read (the process closed its output)."""
        deadline = time.monotonic() + within_s
        with self._seen:
            while not self.ended and deadline > time.monotonic():
                self._seen.wait(deadline - time.monotonic())

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=STACK_STOP_BOUND_S)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": "Bearer dev-settlement-admin-token"}


def start_stack(dev_dir: Path, env: Mapping[str, str] | None = None) -> Stack:
    provider_port, settlement_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, str(DEV_STACK), "run"],
        cwd=ROOT,
        env={
            **(env if env is not None else user_env()),
            "PACT_DEV_DIR": str(dev_dir),
            "PACT_DEV_PROVIDER_PORT": str(provider_port),
            "PACT_DEV_SETTLEMENT_PORT": str(settlement_port),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(
        process=process,
        provider_url=f"http://127.0.0.1:{provider_port}",
        settlement_url=f"http://127.0.0.1:{settlement_port}",
        dev_dir=dev_dir,
    )
    threading.Thread(target=stack._pump, daemon=True).start()
    return stack


def chromium_executable() -> str:
    """Chromium as `make install-dev` installs it (scripts/install_chromium.sh)."""
    configured = os.environ.get("PACT_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "no Chromium for the docs browser test: run `make install-dev` (it installs Debian's "
        "chromium) or set PACT_CHROMIUM",
        pytrace=False,
    )


def node_tool(name: str) -> Path:
    tool = NODE_BIN / name
    if not tool.exists():
        pytest.fail(
            f"{tool} is missing: run `make install-dev` (npm ci in tests/integrators/node)",
            pytrace=False,
        )
    return tool
