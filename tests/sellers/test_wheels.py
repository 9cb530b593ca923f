"""The three packages build as wheels with their metadata, entry points and version, and the
example seller runs on the provider installed from its built wheel (not the workspace source)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from fixtures.sellers import EXAMPLE

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "pact-schema": ("pact_schema", "pact"),
    "pact-provider": ("pact_provider", "pact-provider"),
    "pact-settlement": ("pact_settlement", "pact-settlement"),
}


def _uv() -> str:
    """$UV (make passes its own), uv on PATH, or the one make bootstraps into .dev/tools."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), ROOT / ".dev/tools/bin/uv"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("uv is needed to build the wheels: run the tests with `make test`")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        subprocess.run(
            [_uv(), "build", "--offline", "--wheel", "--package", package, "-o", str(dist)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return {
        package: next(dist.glob(f"{module}-*.whl")) for package, (module, _) in PACKAGES.items()
    }


@pytest.mark.parametrize("package", list(PACKAGES))
def test_each_wheel_has_metadata_an_entry_point_and_the_version(
    wheels: dict[str, Path], package: str
) -> None:
    module, command = PACKAGES[package]
    with zipfile.ZipFile(wheels[package]) as wheel:
        names = wheel.namelist()
        info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        init = wheel.read(f"{module}/__init__.py").decode()
    assert f"Name: {package}" in metadata
    version = next(
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Version: ")
    )
    assert f'__version__ = "{version}"' in init
    assert f"{command} = {module}.cli:main" in entry_points
    assert f"{module}/py.typed" in names
    if package != "pact-schema":  # the services ship their README as the long description
        assert "Description-Content-Type: text/markdown" in metadata


def test_the_example_runs_on_the_provider_installed_from_its_wheel(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "--offline",
            "--no-deps",
            "--python",
            str(python),
            str(wheels["pact-schema"]),
            str(wheels["pact-provider"]),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Third-party dependencies come from this environment (the test runs offline); the
    # workspace's own packages are not on that path (their editable .pth files stay unread).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = (
        "import pact_provider, pact_schema, weather_library, weather_module\n"
        "from importlib.metadata import version\n"
        "assert version('pact-provider') == pact_provider.__version__\n"
        "assert weather_library.seller.price_book().prices['weather.data'] > 0\n"
        "print(pact_provider.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_PROVIDER_")}
    ran = subprocess.run(
        [str(python), "-c", check],
        cwd=EXAMPLE,
        env=env | {"PYTHONPATH": str(EXAMPLE)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    loaded_from = ran.stdout.strip().splitlines()[-1]
    assert loaded_from.startswith(str(venv))  # the wheel, not the workspace source
    help_text = subprocess.run(
        [str(venv / "bin" / "pact-provider"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "serve" in help_text
