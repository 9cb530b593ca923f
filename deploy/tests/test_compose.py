"""Structure of docker-compose.yml (its schema is `docker-compose config`'s job)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from .support import ROOT

CORE = ("postgres", "settlement-migrate", "settlement", "provider")


def test_core_services_and_optional_rail_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in CORE:
        assert name in services
        assert "profiles" not in services[name], f"{name} must start with a plain `up`"
    assert services["localstripe"]["profiles"] == ["stripe"]
    assert services["chain"]["profiles"] == ["chain"]


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
        if name == "settlement-migrate":
            # A one-shot job: dependents wait for it to exit 0 instead.
            assert check == {"disable": True}
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
    for name in ("settlement-migrate", "settlement", "provider"):
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
    """localstripe and ganache in compose are the versions the rails' own tests run against."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    versions = {p["name"]: p["version"] for p in lock["package"]}
    dockerfile = (ROOT / "docker" / "localstripe.Dockerfile").read_text(encoding="utf-8")
    pinned = re.search(r"^ARG LOCALSTRIPE_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert pinned, "docker/localstripe.Dockerfile pins LOCALSTRIPE_VERSION"
    if "localstripe" in versions:
        assert pinned[1] == versions["localstripe"], "localstripe differs from uv.lock"
    image = compose["services"]["chain"]["image"]
    assert image.startswith("trufflesuite/ganache:v")
    for package_json in (ROOT / "services").rglob("package.json"):
        if "node_modules" in package_json.parts:
            continue
        deps = json.loads(package_json.read_text(encoding="utf-8")).get("dependencies", {})
        if "ganache" in deps:
            assert image == f"trufflesuite/ganache:v{deps['ganache']}", package_json
