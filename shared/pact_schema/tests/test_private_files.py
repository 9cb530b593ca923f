"""Key files: `pact keygen` writes them atomically, owner-only, and never through a symlink.

The failure test runs the real CLI in a child process whose file-size limit (RLIMIT_FSIZE) makes
the key write fail half-way, as a full disk would.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pact_schema.cli import EXIT_OK, EXIT_USAGE, main
from pact_schema.files import PrivateFileError, create_private_file, write_private
from pact_schema.keys import Keypair


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_force_makes_a_loose_existing_key_file_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "buyer.json"
    out.write_text("old")
    out.chmod(0o644)
    assert main(["keygen", "--out", str(out), "--force"]) == EXIT_OK
    assert _mode(out) == 0o600
    Keypair.load(out)


def test_keygen_refuses_a_symlink_at_the_target_and_never_writes_through_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not a key")
    victim.chmod(0o644)
    link = tmp_path / "buyer.json"
    link.symlink_to(victim)
    assert main(["keygen", "--out", str(link), "--force"]) == EXIT_USAGE
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "not a key"
    assert _mode(victim) == 0o644
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buyer.json", "elsewhere.txt"]


def test_keygen_refuses_a_dangling_symlink_too(tmp_path: Path) -> None:
    link = tmp_path / "buyer.json"
    link.symlink_to(tmp_path / "would-be-created.json")
    assert main(["keygen", "--out", str(link)]) == EXIT_USAGE
    assert not (tmp_path / "would-be-created.json").exists()


def _limit_file_size() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))


def test_a_key_write_that_fails_half_way_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "buyer.json"
    old = Keypair.generate()
    old.save(out)
    before = out.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "pact_schema.cli", "keygen", "--out", str(out), "--force"],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        check=False,
    )
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "cannot write" in result.stderr
    assert out.read_bytes() == before
    assert Keypair.load(out) == old
    assert [p.name for p in tmp_path.iterdir()] == ["buyer.json"]  # no temporary file left


def test_a_key_file_is_created_in_an_owner_only_directory(tmp_path: Path) -> None:
    out = tmp_path / "new" / "keys" / "buyer.json"
    assert main(["keygen", "--out", str(out)]) == EXIT_OK
    assert _mode(out) == 0o600
    assert _mode(out.parent) == 0o700
    assert _mode(out.parent.parent) == 0o700


def test_write_without_overwrite_has_exactly_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "token"
    barrier = threading.Barrier(8)
    won: list[str] = []
    lost: list[str] = []

    def writer(name: str) -> None:
        barrier.wait()
        try:
            write_private(target, name, overwrite=False)
        except FileExistsError:
            lost.append(name)
        else:
            won.append(name)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert len(lost) == 7
    assert target.read_text() == won[0]
    assert [p.name for p in tmp_path.iterdir()] == ["token"]


def test_create_private_file_makes_an_empty_owner_only_file_once(tmp_path: Path) -> None:
    path = tmp_path / "db" / "settlement.sqlite3"
    assert create_private_file(path) is True
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    path.write_bytes(b"data")
    assert create_private_file(path) is False
    assert path.read_bytes() == b"data"
    link = tmp_path / "link.sqlite3"
    link.symlink_to(path)
    with pytest.raises(PrivateFileError):
        create_private_file(link)
    os.unlink(link)
