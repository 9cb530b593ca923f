"""Helpers of the deployment tests: paths, env files and rendered k8s manifests.

Rendering needs ``kubectl`` (its built-in kustomize). Locally a machine without it skips the
tests that need rendered manifests; in CI (``CI=true``) a missing kubectl fails them instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.compose.example"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
OVERLAYS = ("base", "overlays/production", "overlays/self-hosted")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (make check-deploy says how to install it)"
        if in_ci():
            pytest.fail(f"{message}; CI must not skip this check")
        pytest.skip(message)
    return path


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks ignored), as docker compose reads --env-file."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        assert key not in values, f"{path.name}:{number}: {key} is set twice"
        values[key.strip()] = value.strip()
    return values


@dataclass
class Container:
    """One container of a rendered workload, with everything that sets its environment."""

    where: str  # "overlay: Kind/name container"
    kind: str
    pod_spec: dict[str, Any]
    spec: dict[str, Any]
    env: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)

    @property
    def image(self) -> str:
        return str(self.spec.get("image", ""))

    @property
    def service(self) -> str | None:
        """'provider' or 'settlement' for our images, else None (postgres, ...)."""
        name = self.image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        return {"pact-provider": "provider", "pact-settlement": "settlement"}.get(name)


@dataclass
class Rendering:
    overlay: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.overlay}: no {kind}/{name} in the rendered manifests")

    def workloads(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod template) of every workload."""
        for doc in self.docs:
            if doc.get("kind") not in WORKLOAD_KINDS:
                continue
            spec = doc["spec"]
            if doc["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            yield doc, spec["template"]

    def containers(self, *, init: bool = True) -> Iterator[Container]:
        for doc, template in self.workloads():
            pod = template["spec"]
            groups = ["containers"] + (["initContainers"] if init else [])
            for group in groups:
                for spec in pod.get(group) or []:
                    yield Container(
                        where=f"{self.overlay}: {doc['kind']}/{doc['metadata']['name']} "
                        f"container {spec['name']}",
                        kind=doc["kind"],
                        pod_spec=pod,
                        spec=spec,
                        env=list(spec.get("env") or []),
                        env_from=list(spec.get("envFrom") or []),
                    )


def render(overlay: str) -> Rendering:
    kubectl = need_tool("kubectl")
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendering(overlay=overlay, docs=docs)


def load_gen_env() -> ModuleType:
    """deploy/compose/gen_env.py (the generator behind `make compose-env`) as a module."""
    from importlib import util

    name = "pact_deploy_gen_env"
    if name in sys.modules:
        return sys.modules[name]
    spec = util.spec_from_file_location(name, DEPLOY / "compose" / "gen_env.py")
    assert spec is not None
    assert spec.loader is not None
    module = util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
