"""Private files (keys, tokens, env files, databases): written atomically, owner-only, never
through a symbolic link.

:func:`write_private` writes the whole content to a temporary file in the target's directory
(created ``0600`` by :func:`tempfile.mkstemp`), fsyncs it, then renames it over the target and
fsyncs the directory. A reader therefore sees the old file or the complete new one, never a
partial one; a failure leaves the target as it was and removes the temporary file; and the
result is ``0600`` whatever mode an earlier file at that path had. A symbolic link at the target
is refused (:class:`PrivateFileError`): following it would write the secret wherever the link
points, and silently replacing it would break an operator's deliberate layout, so the operator
decides. (``rename`` replaces a directory entry and never follows a link, so a link created
after the check still cannot redirect the write.)

The services use it for the development RECEIPT key; ``pact keygen``, ``make run``
(``scripts/dev_stack.py``) and ``make compose-env`` (``deploy/compose/gen_env.py``) for every
key and token they write.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["PrivateFileError", "create_private_file", "ensure_private_dir", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


class PrivateFileError(OSError):
    """A private file cannot be written safely (a symbolic link is in the way, it exists)."""


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise PrivateFileError(f"{path} is a symbolic link; refusing to write a secret through it")


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) owner-only (``0700``); an existing directory is
    left as it is, except that it must not be a symbolic link."""
    directory = Path(path)
    _refuse_symlink(directory)
    missing = []
    for level in (directory, *directory.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):  # ``mkdir(parents=True)`` gives parents the umask's mode
        with contextlib.suppress(FileExistsError):
            level.mkdir(mode=DIR_MODE)
    return directory


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(
    path: str | os.PathLike[str], data: str | bytes, *, overwrite: bool = True
) -> Path:
    """Atomically write ``data`` (str: UTF-8) to ``path`` with mode ``0600``.

    ``overwrite=False`` refuses (:class:`FileExistsError`) when ``path`` exists, atomically: of
    two concurrent writers exactly one wins. Missing parent directories are created ``0700``.
    """
    target = Path(path)
    _refuse_symlink(target)
    directory = ensure_private_dir(target.parent)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(temp, target)
        else:
            os.link(temp, target)  # fails with FileExistsError if someone else won the race
            temp.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_dir(directory)
    return target


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create an empty ``0600`` file at ``path`` unless one exists (True when created); missing
    parent directories are created ``0700``. For files another library then fills in place,
    such as a SQLite database (SQLite gives its journal files the database file's mode)."""
    target = Path(path)
    _refuse_symlink(target)
    ensure_private_dir(target.parent)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        if not stat.S_ISREG(target.lstat().st_mode):
            raise PrivateFileError(f"{target} is not a regular file") from None
        return False
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return True
