"""Every environment variable the deployment sets is a setting the service really has.

The settings classes ignore unknown variables (``extra="ignore"``), so a typo such as
``PACT_SETTLEMENT_DATABSE_URL`` would only show in production, as a service quietly running on
its default. These tests compare every ``PACT_*`` name set by docker-compose.yml, the compose env
files and the rendered Kubernetes manifests (literal env, ConfigMaps and Secrets consumed through
``envFrom``) with the fields of ``ProviderSettings`` and ``SettlementSettings`` (env prefix,
aliases and nested delimiters honoured), and then load the real settings classes with the
values each deployment would give them.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pact_provider.config import ProviderSettings
from pact_settlement.config import SettlementSettings
from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic_settings import BaseSettings

from .support import (
    ENV_EXAMPLE,
    ROOT,
    SECRET_EXAMPLE,
    Container,
    Rendering,
    load_gen_env,
    parse_env_file,
)

SETTINGS: dict[str, type[BaseSettings]] = {
    "provider": ProviderSettings,
    "settlement": SettlementSettings,
}
PREFIXES = {"provider": "PACT_PROVIDER_", "settlement": "PACT_SETTLEMENT_"}

# Interpolation-only variables of docker-compose.yml that are not service settings.
COMPOSE_ONLY_VARIABLES = {
    "POSTGRES_PASSWORD",  # the compose Postgres; reaches settlement inside DATABASE_URL
    "PACT_IMAGE_TAG",  # tag of the locally built images
    "PACT_PROVIDER_PORT",  # published host ports
    "PACT_SETTLEMENT_PORT",
    "PACT_LOG_LEVEL",  # one knob for both services' LOG_LEVEL
}

# Names that hold secrets: never literal in a manifest, never in a ConfigMap.
SENSITIVE = re.compile(
    r"(TOKEN|PASSWORD|SECRET|_API_KEY|PRIVATE_KEY|OPERATOR_KEY|SIGNING_KEY|DATABASE_URL)$"
)

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


# --- what the settings classes accept ----------------------------------------------------------


def _alias_names(alias: object) -> list[str]:
    if alias is None:
        return []
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasPath):
        return [str(alias.path[0])]
    if isinstance(alias, AliasChoices):
        return [name for choice in alias.choices for name in _alias_names(choice)]
    return []


def env_names(cls: type[BaseModel], prefix: str, delimiter: str | None) -> set[str]:
    """Environment variable names pydantic-settings reads for ``cls`` (upper-cased)."""
    names: set[str] = set()
    for field_name, info in cls.model_fields.items():
        aliases = _alias_names(info.validation_alias) or _alias_names(info.alias)
        own = aliases if aliases else [prefix + field_name]
        names.update(own)
        nested = info.annotation
        if delimiter and isinstance(nested, type) and issubclass(nested, BaseModel):
            for base in own:
                names.update(env_names(nested, base + delimiter, delimiter))
    return {name.upper() for name in names}


def known(service: str) -> set[str]:
    cls = SETTINGS[service]
    config = cls.model_config
    assert config.get("env_prefix") == PREFIXES[service], (
        f"{cls.__name__} no longer uses the prefix {PREFIXES[service]}: update deploy/"
    )
    return env_names(cls, PREFIXES[service], config.get("env_nested_delimiter"))


def service_of(name: str) -> str | None:
    for service, prefix in PREFIXES.items():
        if name.upper().startswith(prefix):
            return service
    return None


def unknown_settings(names: Iterable[str], *, only: str | None = None) -> list[str]:
    """Problems with ``names``: PACT_* names no settings class has, or another service's."""
    problems = []
    for name in sorted(set(names)):
        service = service_of(name)
        if name != name.upper():
            problems.append(f"{name}: environment names are upper case")
        if service is None:
            if only is not None:
                problems.append(f"{name}: not a {PREFIXES[only]}* setting")
            continue
        if only is not None and service != only:
            problems.append(f"{name}: a {service} setting set on the {only} container")
        elif name.upper() not in known(service):
            close = sorted(n for n in known(service) if _similar(n, name.upper()))
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{name}: {SETTINGS[service].__name__} has no such setting{hint}")
    return problems


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() > 0.85


def test_settings_classes_expose_the_names_deploy_relies_on() -> None:
    for service in SETTINGS:
        names = known(service)
        assert f"{PREFIXES[service]}ENV" in names
        assert f"{PREFIXES[service]}LOG_LEVEL" in names


def test_unknown_names_are_reported_with_a_suggestion() -> None:
    problems = unknown_settings(["PACT_SETTLEMENT_DATABSE_URL", "PACT_PROVIDER_ENV"])
    assert len(problems) == 1
    assert "PACT_SETTLEMENT_DATABSE_URL" in problems[0]
    assert "PACT_SETTLEMENT_DATABASE_URL" in problems[0]
    assert unknown_settings(["PACT_SETTLEMENT_ENV"], only="provider")


# --- docker-compose.yml and its env files ------------------------------------------------------


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {kv[0]: kv[1] if len(kv) > 1 else "" for kv in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def compose_service_kind(name: str, service: Mapping[str, Any]) -> str | None:
    image = str(service.get("image", "")).split(":", 1)[0].rsplit("/", 1)[-1]
    dockerfile = str((service.get("build") or {}).get("dockerfile", ""))
    for kind in SETTINGS:
        if image == f"pact-{kind}" or dockerfile.endswith(f"{kind}.Dockerfile"):
            return kind
    return None


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        value = variables.get(name)
        if op.endswith("?") and not value:
            raise KeyError(f"${{{name}}} is required: {arg}")
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        return value or ""

    return INTERPOLATION.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def test_compose_sets_only_known_settings(compose: dict[str, Any]) -> None:
    problems = []
    for name, service in compose["services"].items():
        kind = compose_service_kind(name, service)
        env = compose_environment(service)
        assert not service.get("env_file"), (
            f"{name}: use `environment:` with ${{VAR}} from --env-file, so each service gets "
            "only the secrets it needs"
        )
        if kind is None:
            leaked = [k for k in env if service_of(k)]
            problems += [f"{name}: {k} set on a non-Pact service" for k in leaked]
        else:
            problems += [f"{name}: {p}" for p in unknown_settings(env, only=kind)]
    assert not problems, "docker-compose.yml:\n  " + "\n  ".join(problems)


def compose_interpolations(compose: Any) -> list[re.Match[str]]:
    """Every ${...} in the compose file's values (comments are not looked at)."""
    if isinstance(compose, dict):
        return [m for k, v in compose.items() for x in (k, v) for m in compose_interpolations(x)]
    if isinstance(compose, list):
        return [m for item in compose for m in compose_interpolations(item)]
    return list(INTERPOLATION.finditer(compose)) if isinstance(compose, str) else []


def test_compose_interpolation_variables_are_settings_or_declared(compose: dict[str, Any]) -> None:
    names = {m["name"] for m in compose_interpolations(compose)}
    pact = {n for n in names if service_of(n) and n not in COMPOSE_ONLY_VARIABLES}
    assert not unknown_settings(pact), unknown_settings(pact)
    others = names - pact - COMPOSE_ONLY_VARIABLES
    assert not others, f"undeclared interpolation variables in docker-compose.yml: {others}"


def test_compose_required_variables_come_from_the_env_files(
    compose: dict[str, Any], generated_env: dict[str, str]
) -> None:
    found = compose_interpolations(compose)
    required = {m["name"] for m in found if (m["op"] or "").endswith("?")}
    example = parse_env_file(ENV_EXAMPLE)
    assert required <= set(example), f"missing from .env.compose.example: {required - set(example)}"
    assert required <= set(generated_env), (
        f"`make compose-env` does not write: {required - set(generated_env)}"
    )
    used = {m["name"] for m in found}
    assert set(example) <= used, f"unused in docker-compose.yml: {set(example) - used}"


@pytest.mark.parametrize("source", ["example", "generated"])
def test_env_files_hold_only_known_settings(source: str, generated_env: dict[str, str]) -> None:
    values = parse_env_file(ENV_EXAMPLE) if source == "example" else generated_env
    pact = {k for k in values if k not in COMPOSE_ONLY_VARIABLES}
    assert not unknown_settings(pact), unknown_settings(pact)
    assert set(values) - pact <= COMPOSE_ONLY_VARIABLES


def test_env_example_is_what_the_generator_documents() -> None:
    module = load_gen_env()
    assert ENV_EXAMPLE.read_text(encoding="utf-8") == module.example(), (
        ".env.compose.example is stale: run "
        "`uv run python deploy/compose/gen_env.py --example > .env.compose.example`"
    )


def _isolated_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for name in list(os.environ):
        if service_of(name):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _compose_bind_mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and volume.startswith(("./", "/")):
            source, target = volume.split(":")[:2]
            mounts[target] = (ROOT / source).resolve()
    return mounts


def _map_paths(env: dict[str, str], mounts: Mapping[str, Path]) -> dict[str, str]:
    """Point in-container paths at the files that would be mounted there."""
    mapped = dict(env)
    for name, value in env.items():
        for target, source in mounts.items():
            if value == target or value.startswith(target.rstrip("/") + "/"):
                mapped[name] = str(source) + value[len(target.rstrip("/")) :]
    return mapped


def test_compose_configuration_is_accepted_by_the_settings_classes(
    compose: dict[str, Any], generated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a generated env file, both services' settings load in production mode."""
    loaded: dict[str, BaseSettings] = {}
    for name, service in compose["services"].items():
        kind = compose_service_kind(name, service)
        command = service.get("command") or []
        if kind is None or command[:2] not in (
            [f"pact-{kind}", "serve"],
            [f"pact-{kind}", "migrate"],
        ):
            continue  # not the service itself (chain-deploy runs evm-deploy, a dev tool)
        env = {k: interpolate(v, generated_env) for k, v in compose_environment(service).items()}
        env = _map_paths(env, _compose_bind_mounts(service))
        for value in env.values():
            if value.startswith("/") and not value.startswith("/tmp"):
                assert Path(value).exists(), f"{name}: {value} is not mounted from the repo"
        _isolated_env(monkeypatch, env)
        settings = SETTINGS[kind]()
        assert str(getattr(settings, "env", "")).endswith("production"), name
        _build_app(kind, settings)
        loaded[name] = settings
    assert {"provider", "settlement", "settlement-migrate"} <= set(loaded)
    _provider_key_is_allowed(loaded["provider"], loaded["settlement"])


def _provider_key_is_allowed(provider: BaseSettings, settlement: BaseSettings) -> None:
    """The key the provider signs with is on settlement's allow-list."""
    from pact_provider.identity import load_identity

    identity = load_identity(provider)  # type: ignore[arg-type]
    assert not identity.ephemeral
    assert identity.public_key_b58 in settlement.provider_keys  # type: ignore[attr-defined]


def _build_app(service: str, settings: BaseSettings) -> None:
    """What `serve` does before listening: the provider loads its key and price book here;
    settlement connects to its database only in the app's lifespan, which is not started."""
    if service == "provider":
        from pact_provider.app import create_app as create_provider_app

        create_provider_app(settings, log_stream=io.StringIO())  # type: ignore[arg-type]
    else:
        from pact_settlement.app import create_app as create_settlement_app

        create_settlement_app(settings)  # type: ignore[arg-type]


# --- rendered Kubernetes manifests -------------------------------------------------------------


def container_env(
    container: Container, rendering: Rendering, example_secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, tuple[str, str]]:
    """name -> (source, value) of every variable the container gets.

    ``source`` is "literal", "configmap:<name>" or "secret:<name>/<key>".
    """
    env: dict[str, tuple[str, str]] = {}
    for item in container.env_from:
        prefix = item.get("prefix", "")
        if "configMapRef" in item:
            ref = item["configMapRef"]["name"]
            data = rendering.get("ConfigMap", ref).get("data") or {}
            for key, value in data.items():
                env[prefix + key] = (f"configmap:{ref}", str(value))
        elif "secretRef" in item:
            ref = item["secretRef"]["name"]
            assert ref in example_secrets, (
                f"{container.where}: envFrom Secret {ref} is not in secret.example.yaml"
            )
            for key, value in example_secrets[ref].items():
                env[prefix + key] = (f"secret:{ref}/{key}", value)
    for item in container.env:
        name = item["name"]
        if "value" in item:
            env[name] = ("literal", str(item["value"]))
            continue
        source = item.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref, key = source["secretKeyRef"]["name"], source["secretKeyRef"]["key"]
            assert key in example_secrets.get(ref, {}), (
                f"{container.where}: {name} reads Secret {ref} key {key}, "
                "which secret.example.yaml does not list"
            )
            env[name] = (f"secret:{ref}/{key}", example_secrets[ref][key])
        elif "configMapKeyRef" in source:
            ref, key = source["configMapKeyRef"]["name"], source["configMapKeyRef"]["key"]
            data = rendering.get("ConfigMap", ref).get("data") or {}
            assert key in data, f"{container.where}: ConfigMap {ref} has no key {key}"
            env[name] = (f"configmap:{ref}", str(data[key]))
        else:
            env[name] = ("fieldRef", "")
    return env


def test_manifests_set_only_known_settings(
    rendering: Rendering, example_secrets: dict[str, dict[str, str]]
) -> None:
    problems = []
    ours = 0
    for container in rendering.containers():
        env = container_env(container, rendering, example_secrets)
        if container.service is None:
            problems += [
                f"{container.where}: {k} set on a non-Pact container" for k in env if service_of(k)
            ]
            continue
        ours += 1
        problems += [
            f"{container.where}: {p}" for p in unknown_settings(env, only=container.service)
        ]
    assert ours >= 3, f"{rendering.overlay}: expected provider, settlement and migrate containers"
    assert not problems, "\n  ".join(["unknown or misplaced settings:", *problems])


def test_configmaps_hold_only_known_settings(rendering: Rendering) -> None:
    for config_map in rendering.of_kind("ConfigMap"):
        name = config_map["metadata"]["name"]
        data = config_map.get("data") or {}
        env_like = [k for k in data if re.fullmatch(r"[A-Z0-9_]+", k)]
        problems = unknown_settings(env_like)
        assert not problems, f"{rendering.overlay}: ConfigMap {name}: {problems}"
        secret_like = [k for k in env_like if SENSITIVE.search(k)]
        assert not secret_like, f"ConfigMap {name} holds secrets: {secret_like} (use a Secret)"


def test_secrets_never_appear_as_literals(rendering: Rendering) -> None:
    for container in rendering.containers():
        for item in container.env:
            if SENSITIVE.search(item["name"]):
                assert "value" not in item, (
                    f"{container.where}: {item['name']} is a literal; reference a Secret"
                )


def test_migration_job_gets_the_same_settings_as_settlement(
    rendering: Rendering, example_secrets: dict[str, dict[str, str]]
) -> None:
    by_name = {c.where.split(": ", 1)[1]: c for c in rendering.containers()}
    deployment = by_name["Deployment/pact-settlement container settlement"]
    expected = container_env(deployment, rendering, example_secrets)
    for other in (
        by_name["Job/pact-settlement-migrate container migrate"],
        by_name["Deployment/pact-settlement container wait-for-migrations"],
    ):
        assert container_env(other, rendering, example_secrets) == expected, other.where
        assert other.image == deployment.image, other.where


def _sample_secret_values(generated_env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Valid values for each Secret key (what an operator would create)."""
    return {
        ("pact-provider", "signing-key"): generated_env["PACT_PROVIDER_SIGNING_KEY"],
        ("pact-settlement-api", "token"): generated_env["PACT_SETTLEMENT_API_TOKEN"],
        ("pact-settlement", "admin-token"): generated_env["PACT_SETTLEMENT_ADMIN_TOKEN"],
        ("pact-settlement", "provider-keys"): generated_env["PACT_SETTLEMENT_PROVIDER_KEYS"],
        ("pact-settlement", "database-url"): "postgresql+asyncpg://pact:pw@db.internal:5432/pact",
        ("pact-settlement", "signing-key"): generated_env["PACT_SETTLEMENT_SIGNING_KEY"],
        ("pact-settlement-rails", "stripe-api-key"): generated_env[
            "PACT_SETTLEMENT_STRIPE_API_KEY"
        ],
        ("pact-settlement-rails", "stripe-webhook-secret"): generated_env[
            "PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET"
        ],
        ("pact-settlement-rails", "evm-operator-key"): generated_env[
            "PACT_SETTLEMENT_EVM_OPERATOR_KEY"
        ],
        ("pact-postgres", "password"): generated_env["POSTGRES_PASSWORD"],
    }


def _pod_files(
    container: Container,
    rendering: Rendering,
    samples: Mapping[tuple[str, str], str],
    example_secrets: Mapping[str, Mapping[str, str]],
    root: Path,
) -> dict[str, Path]:
    """Write what the container's volumes would hold under ``root``: mountPath -> local dir."""
    volumes = {v["name"]: v for v in container.pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.spec.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        files: dict[str, str] = {}
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            files = dict(rendering.get("ConfigMap", name).get("data") or {})
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            assert name in example_secrets, f"{container.where}: Secret {name} not in the example"
            files = {k: samples.get((name, k), v) for k, v in example_secrets[name].items()}
        else:
            continue
        items = volume.get("configMap", volume.get("secret", {})).get("items")
        if items:
            files = {item["path"]: files[item["key"]] for item in items}
        target = root / mount["name"]
        target.mkdir(parents=True, exist_ok=True)
        for path, content in files.items():
            (target / path).write_text(content, encoding="utf-8")
        mounts[mount["mountPath"]] = target
    return mounts


def test_manifest_configuration_is_accepted_by_the_settings_classes(
    rendering: Rendering,
    example_secrets: dict[str, dict[str, str]],
    generated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """ConfigMaps + literals + (valid sample) Secrets + mounted files load in production mode."""
    samples = _sample_secret_values(generated_env)
    for index, container in enumerate(rendering.containers()):
        if container.service is None:
            continue
        env = {}
        for name, (source, value) in container_env(container, rendering, example_secrets).items():
            if source.startswith("secret:"):
                ref, key = source.removeprefix("secret:").split("/", 1)
                value = samples.get((ref, key), value)
            env[name] = value
        mounts = _pod_files(container, rendering, samples, example_secrets, tmp_path / str(index))
        env = _map_paths(env, mounts)
        _isolated_env(monkeypatch, env)
        settings = SETTINGS[container.service]()
        assert str(getattr(settings, "env", "")).endswith("production"), container.where
        _build_app(container.service, settings)
        if container.service == "provider":
            from pact_provider.identity import load_identity

            assert not load_identity(settings).ephemeral  # type: ignore[arg-type]


def test_secret_example_lists_only_referenced_keys(
    renderings: dict[str, Rendering], example_secrets: dict[str, dict[str, str]]
) -> None:
    """secret.example.yaml documents what the manifests use: nothing missing, nothing stale."""
    used: set[tuple[str, str]] = set()
    for rendering in renderings.values():
        for container in rendering.containers():
            for item in container.env:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
            for item in container.env_from:
                if "secretRef" in item:
                    name = item["secretRef"]["name"]
                    used.update((name, key) for key in example_secrets.get(name, {}))
            volumes = container.pod_spec.get("volumes") or []
            for volume in volumes:
                if "secret" in volume:
                    name = volume["secret"]["secretName"]
                    keys = [i["key"] for i in volume["secret"].get("items") or []]
                    used.update((name, key) for key in keys or example_secrets.get(name, {}))
    listed = {(name, key) for name, data in example_secrets.items() for key in data}
    assert listed == used, f"stale: {sorted(listed - used)}; missing: {sorted(used - listed)}"


def test_secret_example_holds_placeholders_only() -> None:
    docs = yaml.safe_load_all(SECRET_EXAMPLE.read_text(encoding="utf-8"))
    for doc in filter(None, docs):
        assert "data" not in doc, "use stringData with visible placeholders"
        for key, value in doc["stringData"].items():
            assert "REPLACE" in value, f"{doc['metadata']['name']}/{key} looks like a real value"
