"""Postgres helpers for the settlement benchmarks: a throw-away database, bulk loads, EXPLAIN."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.common import log


@dataclass(frozen=True)
class PgTarget:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def cli_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]


async def _admin(target: PgTarget, sql: str) -> None:
    conn = await asyncpg.connect(target.dsn("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def admin(target: PgTarget, sql: str) -> None:
    asyncio.run(_admin(target, sql))


@contextlib.contextmanager
def scratch_database(target: PgTarget, name: str) -> Iterator[str]:
    """A fresh database ``name`` (dropped first if a previous run left it), dropped after."""
    admin(target, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(target, f'CREATE DATABASE "{name}"')
    log(f"created database {name}")
    try:
        yield name
    finally:
        admin(target, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped database {name}")


async def fetch(target: PgTarget, database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(target.dsn(database))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _execute(target: PgTarget, database: str, sql: str) -> None:
    conn = await asyncpg.connect(target.dsn(database))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def execute(target: PgTarget, database: str, sql: str) -> None:
    asyncio.run(_execute(target, database, sql))


def have_pgbench() -> bool:
    return shutil.which("pgbench") is not None


def pg_server_version(target: PgTarget) -> str:
    rows = asyncio.run(fetch(target, "postgres", "SHOW server_version"))
    return str(rows[0][0])


def run_cli(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
