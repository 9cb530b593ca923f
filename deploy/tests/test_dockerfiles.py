"""The Dockerfiles, checked without a Docker engine.

* Static rules on the instructions (multi-stage, dependencies before code, non-root runtime,
  HEALTHCHECK, no secrets) and on .dockerignore.
* Every third-party package an image installs has a wheel for linux x86_64 and aarch64 on
  CPython 3.11 in uv.lock: the slim builder has no compiler.
* The builder stage's own instructions (WORKDIR, ENV, COPY through .dockerignore, the `uv sync`
  RUNs) are replayed in a scratch directory, and the resulting virtualenv is checked the way
  the runtime stage uses it: on its own, without the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from .support import ROOT

SERVICES = {"provider": 8000, "settlement": 8001}
SENSITIVE = re.compile(r"(TOKEN|PASSWORD|SECRET|PRIVATE|API_KEY|SIGNING_KEY|DATABASE_URL)", re.I)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in instructions:
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(result))
            current = result.setdefault(name, [])
        if current is not None:
            current.append(ins)
    return result


def dockerfile(service: str) -> Path:
    return ROOT / "docker" / f"{service}.Dockerfile"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_multi_stage_and_caches_dependencies(service: str) -> None:
    path = dockerfile(service)
    assert path.read_text(encoding="utf-8").startswith("# syntax=docker/dockerfile:1\n")
    parsed = stages(parse_dockerfile(path))
    assert list(parsed) == ["uv", "builder", "runtime"]
    builder = parsed["builder"]
    assert builder[0].args.startswith("${PYTHON_IMAGE}")
    runs = [i for i in builder if i.keyword == "RUN" and "uv sync" in i.args]
    assert len(runs) == 2, "one sync for dependencies, one for the workspace packages"
    first, second = (shlex.split(r.args) for r in runs)
    for flags in (first, second):
        assert {"--frozen", "--no-dev"} <= set(flags)
        assert flags[flags.index("--package") + 1] == f"pact-{service}"
    assert "--no-install-workspace" in first
    assert "--no-editable" in second
    copies_before = [i.args for i in builder if i.keyword == "COPY" and i.line < runs[0].line]
    assert all("pyproject.toml" in c or "uv.lock" in c or "--from=" in c for c in copies_before), (
        "only manifests and the lock file may be copied before the dependency layer"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_is_small_non_root_and_healthchecked(service: str) -> None:
    runtime = stages(parse_dockerfile(dockerfile(service)))["runtime"]
    by_keyword: dict[str, list[str]] = {}
    for ins in runtime:
        by_keyword.setdefault(ins.keyword, []).append(ins.args)
    assert runtime[0].args.startswith("${PYTHON_IMAGE}"), "runtime on the slim base"
    copies = by_keyword["COPY"]
    assert copies == ["--from=builder /app/.venv /app/.venv"], "only the virtualenv is copied"
    (user,) = by_keyword["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric USER, so runAsNonRoot can check it"
    assert int(uid) >= 1000
    port = SERVICES[service]
    assert by_keyword["EXPOSE"] == [str(port)]
    assert by_keyword["STOPSIGNAL"] == ["SIGTERM"]
    (health,) = by_keyword["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health
    assert '"python"' in health, "slim images have no curl: the check uses Python"
    (cmd,) = by_keyword["CMD"]
    assert cmd.startswith(f'["pact-{service}", "serve", "--host", "0.0.0.0", "--port", "{port}"')


@pytest.mark.parametrize("path", sorted((ROOT / "docker").glob("*.Dockerfile")), ids=str)
def test_no_secret_is_baked_into_an_image(path: Path) -> None:
    for ins in parse_dockerfile(path):
        if ins.keyword in {"ENV", "ARG", "LABEL"}:
            assert not SENSITIVE.search(ins.args), f"{path.name}:{ins.line}: {ins.args}"
        if ins.keyword in {"COPY", "ADD"}:
            assert ".env" not in ins.args, f"{path.name}:{ins.line}"
            assert ins.keyword == "COPY", f"{path.name}:{ins.line}: use COPY, not ADD"


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif line[i] == "[":
                end = line.index("]", i)
                regex, i = regex + line[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((negate, re.compile(regex + "(?:/.*)?")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    result = False
    for negate, pattern in patterns:
        if pattern.fullmatch(relative):
            result = not negate
    return result


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in [
        ".venv/bin/python",
        ".dev/compose/provider-signing-key.json",
        ".env.compose",
        ".env",
        ".git/config",
        "services/provider/tests/test_x.py",
        "shared/pact_schema/tests/vectors/node_modules/x/index.js",
        "services/settlement/contracts/node_modules/solc/index.js",
        "services/settlement/src/pact_settlement/__pycache__/x.cpython-311.pyc",
    ]:
        assert ignored(path, patterns), path
    for path in [
        "uv.lock",
        "pyproject.toml",
        "services/provider/pyproject.toml",
        "services/settlement/src/pact_settlement/rails/evm_artifact/PactEscrow.json",
        "services/settlement/src/pact_settlement/migrations/env.py",
        "shared/pact_schema/src/pact_schema/keys.py",
    ]:
        assert not ignored(path, patterns), path


# --- wheels for every platform an image is built on --------------------------------------------


def _lock() -> dict[str, dict[str, object]]:
    doc = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {p["name"]: p for p in doc["package"]}


def _closure(root: str, packages: dict[str, dict[str, object]], env: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while todo:
        name, extras = todo.pop()
        key = name + "[" + ",".join(extras) + "]"
        if key in seen:
            continue
        seen.add(key)
        package = packages[name]
        deps = list(package.get("dependencies") or [])  # type: ignore[call-overload]
        optional = package.get("optional-dependencies") or {}
        for extra in extras:
            deps += optional.get(extra, [])  # type: ignore[union-attr]
        for dep in deps:
            marker = dep.get("marker")
            if marker and not Marker(marker).evaluate(env):
                continue
            todo.append((dep["name"], tuple(dep.get("extra") or ())))
    return {key.split("[", 1)[0] for key in seen}


def _supported_tags(machine: str) -> set[Tag]:
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    if machine == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    tags = set(cpython_tags((3, 11), platforms=platforms))
    tags |= set(compatible_tags((3, 11), "cp311", platforms=platforms))
    return tags


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_image_dependency_has_a_wheel(service: str, machine: str) -> None:
    packages = _lock()
    env = {
        "python_version": "3.11",
        "python_full_version": "3.11.10",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    tags = _supported_tags(machine)
    missing = []
    for name in sorted(_closure(f"pact-{service}", packages, env)):
        source = packages[name].get("source") or {}
        if "editable" in source or "virtual" in source or "directory" in source:  # type: ignore[operator]
            continue  # our workspace packages: built from source by hatchling (pure Python)
        wheels = packages[name].get("wheels") or []
        if not any(
            tags & set(parse_wheel_filename(w["url"].rsplit("/", 1)[-1])[3])  # type: ignore[index]
            for w in wheels  # type: ignore[union-attr]
        ):
            missing.append(f"{name} {packages[name].get('version')}")
    assert not missing, (
        f"no CPython 3.11 linux/{machine} wheel in uv.lock for: {', '.join(missing)}. The slim "
        "builder cannot compile: pin a version with wheels or add build tools to the builder."
    )


# --- the builder stage, replayed ---------------------------------------------------------------


def _uv_binary() -> Path | None:
    """The uv that stands in for the image's: ``$UV`` (what ``make`` passes to check.sh), the
    one on PATH, or the one ``make install`` bootstraps into ``.dev/tools`` (as CI has it)."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), ROOT / ".dev/tools/bin/uv"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    return None


def _replay_builder(service: str, scratch: Path) -> Path:
    """Run the builder stage's instructions under ``scratch`` (as the image's root)."""
    builder = stages(parse_dockerfile(dockerfile(service)))["builder"]
    patterns = dockerignore_patterns()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    uv = _uv_binary()
    assert uv is not None
    env["PATH"] = f"{uv.parent}{os.pathsep}{env.get('PATH', '')}"
    workdir = scratch

    def inside(path: str) -> Path:
        return scratch / path.lstrip("/") if path.startswith("/") else workdir / path

    for ins in builder[1:]:
        if ins.keyword == "WORKDIR":
            workdir = inside(ins.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, _, value = item.partition("=")
                env[key] = str(inside(value)) if value.startswith("/") else value
        elif ins.keyword == "COPY":
            parts = ins.args.split()
            if any(p.startswith("--from=") for p in parts):
                continue  # the uv binary: this machine's (_uv_binary) stands in
            *sources, target = parts
            into_dir = target.endswith("/") or len(sources) > 1
            for source in sources:
                _copy_context(ROOT / source, inside(target), patterns, into_dir)
        elif ins.keyword == "RUN":
            command = " ".join(p for p in shlex.split(ins.args) if not p.startswith("--mount="))
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert proc.returncode == 0, f"RUN {command} failed:\n{proc.stderr[-3000:]}"
    assert "UV_PROJECT_ENVIRONMENT" in env, "the builder names the virtualenv it fills"
    return Path(env["UV_PROJECT_ENVIRONMENT"])


def _copy_context(
    source: Path, target: Path, patterns: list[tuple[bool, re.Pattern[str]]], into_dir: bool
) -> None:
    relative = source.relative_to(ROOT).as_posix()
    assert not ignored(relative, patterns), f"COPY {relative}: excluded by .dockerignore"
    if source.is_file():
        dest = target / source.name if into_dir or target.is_dir() else target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return
    for path in source.rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and not ignored(rel, patterns):
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The virtualenv each image would contain (built once per service), source tree removed."""
    if _uv_binary() is None:
        pytest.skip("no uv: not on PATH, not in $UV, not bootstrapped into .dev/tools by make")
    built: dict[str, Path] = {}

    def build(service: str) -> Path:
        if service not in built:
            rootfs = tmp_path_factory.mktemp(f"image-{service}") / "rootfs"
            built[service] = _replay_builder(service, rootfs)
            # The runtime stage has the virtualenv only: no source tree, no dev tools.
            shutil.rmtree(rootfs / "app" / "services")
            shutil.rmtree(rootfs / "app" / "shared")
        return built[service]

    return build


def _runtime_env(venv: Path, home: Path, **settings: str) -> dict[str, str]:
    """Roughly the runtime stage's environment: its PATH and ENV, plus the given settings."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **settings,
    }


@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", SERVICES)
def test_builder_stage_produces_a_self_contained_virtualenv(
    service: str, image_venv: Callable[[str], Path], tmp_path: Path
) -> None:
    venv = image_venv(service)
    python = venv / "bin" / "python"
    script = venv / "bin" / f"pact-{service}"
    assert script.is_file(), f"the image's CMD needs {script.name}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import importlib.util as u, pathlib, sys\n"
        f"import pact_{service}, pact_schema\n"
        f"assert pathlib.Path(pact_{service}.__file__).is_relative_to(sys.prefix)\n"
        "assert u.find_spec('pytest') is None, 'dev dependencies in the image'\n"
        "assert u.find_spec('pact_provider' if 'settlement' in sys.argv[1] else"
        " 'pact_settlement') is None, 'the other service in the image'\n"
    )
    env = _runtime_env(venv, elsewhere)
    run = subprocess.run(
        [str(python), "-c", probe, service],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    help_run = subprocess.run(
        [str(script), "serve", "--help"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert help_run.returncode == 0, f"pact-{service} serve --help:\n{help_run.stderr}"
    assert "--port" in help_run.stdout
    if service == "settlement":
        package = next((venv / "lib").glob("python3.*/site-packages/pact_settlement"))
        assert (package / "migrations" / "env.py").is_file(), "migrations missing from the wheel"
        assert list((package / "rails" / "evm_artifact").glob("*.json")), "EVM artifact missing"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthcheck(service: str, port: int) -> list[str]:
    """The image's HEALTHCHECK command, aimed at ``port``."""
    runtime = stages(parse_dockerfile(dockerfile(service)))["runtime"]
    (health,) = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3 :])
    return [part.replace(f":{SERVICES[service]}/", f":{port}/") for part in command]


def _serve(
    service: str, venv: Path, env: dict[str, str], cwd: Path, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the image's CMD (on loopback and a free port) and wait for its HEALTHCHECK."""
    port = _free_port()
    runtime = stages(parse_dockerfile(dockerfile(service)))["runtime"]
    (cmd,) = [i.args for i in runtime if i.keyword == "CMD"]
    argv = json.loads(cmd)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    check = _healthcheck(service, port)
    check[0] = str(venv / "bin" / check[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{service} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        probe = subprocess.run(check, env=env, capture_output=True, check=False, timeout=10)
        if probe.returncode == 0:
            return process, port
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"{service}: HEALTHCHECK never passed:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM (the images' STOPSIGNAL), as `docker stop` and Kubernetes send it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"no graceful exit within 25 s of SIGTERM:\n{log.read_text()[-2000:]}")
    # uvicorn finishes its shutdown, then re-raises the signal: exit by SIGTERM (143) is clean.
    output = log.read_text()
    assert process.returncode in (0, -signal.SIGTERM), f"exit {process.returncode}:\n{output}"
    assert "Application shutdown complete" in output, output[-2000:]


@pytest.mark.timeout(900)
def test_images_migrate_serve_and_stop_gracefully_without_the_source_tree(
    image_venv: Callable[[str], Path], generated_env: dict[str, str], tmp_path: Path
) -> None:
    """The compose start order, with each image's own commands and HEALTHCHECK, on loopback.

    Settlement runs on SQLite here (no database server needed); the working directory stays
    empty, as the read-only root filesystem requires.
    """
    workdir = tmp_path / "app"
    workdir.mkdir()
    home = tmp_path / "nonexistent"
    settlement_venv, provider_venv = image_venv("settlement"), image_venv("provider")
    settlement_env = _runtime_env(
        settlement_venv,
        home,
        PACT_SETTLEMENT_ENV="production",
        PACT_SETTLEMENT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'settlement.sqlite3'}",
        PACT_SETTLEMENT_AUTO_MIGRATE="false",
        PACT_SETTLEMENT_API_TOKEN=generated_env["PACT_SETTLEMENT_API_TOKEN"],
        PACT_SETTLEMENT_ADMIN_TOKEN=generated_env["PACT_SETTLEMENT_ADMIN_TOKEN"],
        PACT_SETTLEMENT_PROVIDER_KEYS=generated_env["PACT_SETTLEMENT_PROVIDER_KEYS"],
        PACT_SETTLEMENT_SIGNING_KEY=generated_env["PACT_SETTLEMENT_SIGNING_KEY"],
    )
    for command in (["pact-settlement", "migrate"], ["pact-settlement", "check-migrations"]):
        run = subprocess.run(
            command, cwd=workdir, env=settlement_env, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, f"{' '.join(command)}:\n{run.stdout}{run.stderr}"
    settlement, settlement_port = _serve(
        "settlement", settlement_venv, settlement_env, workdir, tmp_path / "settlement.log"
    )
    provider = None
    try:
        provider_env = _runtime_env(
            provider_venv,
            home,
            PACT_PROVIDER_ENV="production",
            PACT_PROVIDER_SIGNING_KEY=generated_env["PACT_PROVIDER_SIGNING_KEY"],
            PACT_PROVIDER_SETTLEMENT_URL=f"http://127.0.0.1:{settlement_port}",
            PACT_PROVIDER_ALLOW_PLAINTEXT_SETTLEMENT="true",  # loopback, as in-cluster
            PACT_PROVIDER_FULFILMENT="none",  # production refuses the demo handlers
            PACT_PROVIDER_SETTLEMENT_TOKEN=generated_env["PACT_SETTLEMENT_API_TOKEN"],
            PACT_PROVIDER_PRICE_BOOK_FILE=str(ROOT / "deploy" / "k8s" / "base" / "price-book.toml"),
        )
        provider, provider_port = _serve(
            "provider", provider_venv, provider_env, workdir, tmp_path / "provider.log"
        )
        for port in (settlement_port, provider_port):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                assert resp.status == 200, port
    finally:
        try:
            if provider is not None:
                _stop(provider, tmp_path / "provider.log")
        finally:  # never leave a server behind, whatever failed first
            _stop(settlement, tmp_path / "settlement.log")
    assert not list(workdir.iterdir()), "the services wrote into their working directory"
    assert not home.exists(), "the services wrote into HOME"
