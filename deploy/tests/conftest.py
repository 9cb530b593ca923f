"""Fixtures of the deployment tests: the compose file, env files and rendered k8s manifests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .support import (
    COMPOSE_FILE,
    OVERLAYS,
    SECRET_EXAMPLE,
    Rendering,
    load_gen_env,
    parse_env_file,
    render,
)


@pytest.fixture(scope="session")
def renderings() -> dict[str, Rendering]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session", params=OVERLAYS)
def rendering(request: pytest.FixtureRequest, renderings: dict[str, Rendering]) -> Rendering:
    return renderings[request.param]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="session")
def example_secrets() -> dict[str, dict[str, str]]:
    """Secret name -> {key: placeholder} from secret.example.yaml."""
    secrets: dict[str, dict[str, str]] = {}
    for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text(encoding="utf-8")):
        if not doc:
            continue
        assert doc["kind"] == "Secret", f"secret.example.yaml holds a {doc['kind']}"
        data = {**(doc.get("stringData") or {}), **(doc.get("data") or {})}
        secrets[doc["metadata"]["name"]] = {str(k): str(v) for k, v in data.items()}
    return secrets


@pytest.fixture(scope="session")
def generated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real .env.compose, written by the generator behind `make compose-env`."""
    module = load_gen_env()
    out = tmp_path_factory.mktemp("compose") / "env.compose"
    keys = out.parent / "keys"
    assert module.main(["--out", str(out), "--key-dir", str(keys), "--force"]) == 0
    assert out.stat().st_mode & 0o077 == 0, "the generated env file must be private (0600)"
    return parse_env_file(out)
