"""The secret files written by `make compose-env` and `make run`: owner-only, written
atomically, never through a symbolic link (pact_schema.files does the writing)."""

from __future__ import annotations

import stat
import sys
from importlib import util
from pathlib import Path
from types import ModuleType

import pytest
from pact_schema.files import PrivateFileError
from pact_schema.keys import Keypair

from .support import ROOT, load_gen_env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _dev_stack() -> ModuleType:
    name = "pact_dev_stack"
    if name not in sys.modules:
        spec = util.spec_from_file_location(name, ROOT / "scripts" / "dev_stack.py")
        assert spec is not None
        assert spec.loader is not None
        module = util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_compose_env_replaces_a_loose_file_with_an_owner_only_one(tmp_path: Path) -> None:
    out, keys = tmp_path / "env.compose", tmp_path / "keys"
    out.write_text("POSTGRES_PASSWORD=old\n")
    out.chmod(0o644)
    assert load_gen_env().main(["--out", str(out), "--key-dir", str(keys), "--force"]) == 0
    assert _mode(out) == 0o600
    assert "POSTGRES_PASSWORD=old" not in out.read_text()
    assert _mode(keys) == 0o700
    for key_file in keys.iterdir():
        assert _mode(key_file) == 0o600, key_file


def test_compose_env_refuses_a_symlink_and_writes_nothing_through_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("unrelated\n")
    out = tmp_path / "env.compose"
    out.symlink_to(victim)
    code = load_gen_env().main(["--out", str(out), "--key-dir", str(tmp_path / "k"), "--force"])
    assert code == 1
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "unrelated\n"
    assert out.is_symlink()


def test_dev_stack_keys_and_tokens_are_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _dev_stack()
    dev = tmp_path / ".dev"
    monkeypatch.setattr(module, "DEV", dev)
    monkeypatch.setattr(module, "STACK_ENV", dev / "stack.json")
    stack = module._stack({})
    assert _mode(dev) == 0o700
    assert _mode(dev / "keys") == 0o700
    assert _mode(dev / "stack.json") == 0o600
    for name in ("provider_key_file", "buyer_key_file", "settlement_key_file"):
        assert _mode(Path(stack[name])) == 0o600
        Keypair.load(stack[name])
    assert module._stack({}) == stack  # keys made once, then reused


def test_dev_stack_never_writes_its_tokens_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _dev_stack()
    dev = tmp_path / ".dev"
    dev.mkdir(mode=0o700)
    elsewhere = tmp_path / "world-readable.json"
    (dev / "stack.json").symlink_to(elsewhere)  # dangling: following it would create the file
    monkeypatch.setattr(module, "DEV", dev)
    monkeypatch.setattr(module, "STACK_ENV", dev / "stack.json")
    with pytest.raises(PrivateFileError, match="symbolic link"):
        module._stack({})
    assert not elsewhere.exists()
