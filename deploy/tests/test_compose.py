"""Structure of docker-compose.yml (its schema is `docker-compose config`'s job)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, in_ci

CORE = ("postgres", "settlement-migrate", "settlement", "provider")


def test_core_services_and_optional_rail_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in CORE:
        assert name in services
        assert "profiles" not in services[name], f"{name} must start with a plain `up`"
    assert services["localstripe"]["profiles"] == ["stripe"]
    assert services["chain"]["profiles"] == ["chain"]
    assert services["chain-deploy"]["profiles"] == ["chain"]
    assert services["stripe-webhooks"]["profiles"] == ["stripe"]
    assert services["chain-deploy"]["depends_on"] == {"chain": {"condition": "service_healthy"}}
    assert services["stripe-webhooks"]["depends_on"] == {
        "localstripe": {"condition": "service_healthy"}
    }


def test_start_order_waits_for_health_and_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["settlement-migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}
    }
    assert services["settlement"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "settlement-migrate": {"condition": "service_completed_successfully"},
    }
    assert services["provider"]["depends_on"] == {"settlement": {"condition": "service_healthy"}}
    assert services["settlement-migrate"]["command"] == ["pact-settlement", "migrate"]
    assert services["settlement-migrate"]["restart"] == "no"


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        if service.get("restart") == "no":
            # A one-shot job (migrations, setup): dependents wait for it to exit 0 instead.
            assert check == {"disable": True}, name
            continue
        assert check.get("test"), f"{name} has no healthcheck"
    for name, path in [("provider", "8000/readyz"), ("settlement", "8001/readyz")]:
        assert path in " ".join(compose["services"][name]["healthcheck"]["test"])


def test_postgres_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pgdata" in compose["volumes"]
    assert "ports" not in postgres, "the database is reachable on the compose network only"


def test_services_share_one_build_context(compose: dict[str, Any]) -> None:
    builds = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert {"settlement-migrate", "settlement", "provider"} <= set(builds)
    for name, build in builds.items():
        assert build["context"] == ".", f"{name}: build from the repository root"
        assert (ROOT / build["dockerfile"]).is_file(), build["dockerfile"]
    assert builds["settlement"] == builds["settlement-migrate"]
    assert (
        compose["services"]["settlement"]["image"]
        == (compose["services"]["settlement-migrate"]["image"])
    )


def test_pact_containers_are_hardened(compose: dict[str, Any]) -> None:
    for name in ("settlement-migrate", "settlement", "provider", "chain-deploy"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    sensitive = re.compile(r"(TOKEN|PASSWORD|SECRET|KEY|DATABASE_URL)$")
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if sensitive.search(key) and not key.endswith("_KEYS_FILE"):
                assert "${" in str(value), f"{name}: {key} must come from the env file"


def test_only_the_provider_is_published_beyond_localhost(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            if name != "provider":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_local_rail_backends_match_the_versions_the_tests_pin(compose: dict[str, Any]) -> None:
    """localstripe and anvil in compose are the versions the rails' own tests run against."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    versions = {p["name"]: p["version"] for p in lock["package"]}
    dockerfile = (ROOT / "docker" / "localstripe.Dockerfile").read_text(encoding="utf-8")
    pinned = re.search(r"^ARG LOCALSTRIPE_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert pinned, "docker/localstripe.Dockerfile pins LOCALSTRIPE_VERSION"
    if "localstripe" in versions:
        assert pinned[1] == versions["localstripe"], "localstripe differs from uv.lock"
    image = compose["services"]["chain"]["image"]
    assert image.startswith("ghcr.io/foundry-rs/foundry:v")
    pinned_anvil = []
    for package_json in (ROOT / "services").rglob("package.json"):
        if "node_modules" in package_json.parts:
            continue
        deps = json.loads(package_json.read_text(encoding="utf-8")).get("dependencies", {})
        if "@foundry-rs/anvil" in deps:
            pinned_anvil.append(package_json)
            assert image == f"ghcr.io/foundry-rs/foundry:v{deps['@foundry-rs/anvil']}", package_json
    assert pinned_anvil, "the tests pin @foundry-rs/anvil"


ANVIL = ROOT / "services/settlement/tests/rails/gateways/node/node_modules/.bin/anvil"


def _compose_default(value: str) -> str:
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", value)
    assert match, f"expected ${{VAR:-default}}, got {value!r}"
    return match[1]


@pytest.mark.timeout(300)
def test_chain_deploy_puts_the_escrow_where_settlement_expects_it(
    compose: dict[str, Any], generated_env: dict[str, str], tmp_path: Path
) -> None:
    """The `chain-deploy` command against an anvil started as the `chain` service is."""
    if not ANVIL.exists():
        message = "anvil is not installed (make install runs npm ci for it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = list(compose["services"]["chain"]["command"])
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    service = compose["services"]["chain-deploy"]
    expected = generated_env["PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS"]
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PACT_SETTLEMENT_EVM_RPC_URL": f"http://127.0.0.1:{port}",
        "PACT_SETTLEMENT_EVM_CHAIN_ID": _compose_default(
            service["environment"]["PACT_SETTLEMENT_EVM_CHAIN_ID"]
        ),
        "PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS": expected,
        "PACT_SETTLEMENT_EVM_OPERATOR_KEY": generated_env["PACT_SETTLEMENT_EVM_OPERATOR_KEY"],
    }
    command = [part.replace("$$", "$") for part in service["command"]]
    log = (tmp_path / "anvil.log").open("wb")
    node = subprocess.Popen([str(ANVIL), *args, "--silent"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "anvil did not start"
                assert node.poll() is None, (tmp_path / "anvil.log").read_text()
                time.sleep(0.2)
        outputs = []
        for _ in range(2):  # the second run finds the contract and deploys nothing
            run = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert run.returncode == 0, run.stdout + run.stderr
            outputs.append(run.stdout)
        assert f"PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS={expected}" in outputs[0]
        token_escrow = generated_env["PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS"]
        assert f"PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS={token_escrow}" in outputs[0]
        assert f"PactEscrow already at {expected}" in outputs[1]
    finally:
        node.terminate()
        node.wait(timeout=30)
        log.close()


def test_the_quote_store_is_optional_and_off_unless_asked_for(compose: dict[str, Any]) -> None:
    store = compose["services"]["quote-store"]
    assert store["profiles"] == ["quote-store"]
    assert "ports" not in store, "the quote store stays on the compose network"
    assert "--save" in store["command"]  # in memory only
    provider = compose["services"]["provider"]["environment"]
    assert provider["PACT_PROVIDER_QUOTE_STORE_URL"] == "${PACT_PROVIDER_QUOTE_STORE_URL:-}"
