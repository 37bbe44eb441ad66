"""The paths a command reads or writes: checked before any work, written whole.

Every path flag (``--out``, ``--ship``, ``--readme``, ``--merge``) goes through one of
these checks before a command starts its work, so a wrong path is a one-line argparse
error (exit 2), never a failure after minutes of training. Each check raises
``ValueError`` naming the flag, the path, what is wrong and the fix.

Symbolic links. A file is written by moving a finished temporary file over it, which
would replace a link rather than the file it points to. So a link to a file is resolved
first: the file it points to is what gets read and replaced, and the link stays
(``--ship``, ``--readme``). A model's files (``OUT.pth`` and its card ``OUT.json``,
written side by side as a pair) may not be links. A link that points nowhere is refused
everywhere; a link to a directory is that directory.

:func:`write_file` writes a file atomically and names it when the write fails (a full
disk says "No space left on device" and the path). Used by every command (appendix),
first by chapter 3's ``train``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "check_out_file",
    "check_out_dir",
    "check_ship_file",
    "read_user_text",
    "read_user_json",
    "write_file",
]


def _path(flag: str, name: str) -> Path:
    """``name`` as a path; a NUL byte (which no file name can hold) is refused."""
    if "\0" in name:
        raise ValueError(f"{flag} {name!r}: a file name cannot hold a NUL byte")
    return Path(name)


def _refuse_odd(flag: str, name: str, path: Path, links: bool) -> None:
    """Refuse ``path`` if it is a dangling link, a link (unless ``links``), a directory
    or something other than a regular file."""
    if path.is_symlink():
        target = os.readlink(path)
        if not path.exists():
            raise ValueError(
                f"{flag} {name}: {path} is a symbolic link to {target}, which does "
                "not exist; remove the link or name another file"
            )
        if not links:
            raise ValueError(
                f"{flag} {name}: {path} is a symbolic link (to {target}); a model "
                "and its card are written side by side, so name the real path"
            )
    if path.is_dir():
        raise ValueError(
            f"{flag} {name}: {path} is a directory; name a file, e.g. "
            f"{path / ('model' + (path.suffix or '.json'))}"
        )
    if path.exists() and not path.is_file():
        raise ValueError(f"{flag} {name}: {path} exists and is not a regular file")


def _check_writable_dir(flag: str, name: str, directory: Path) -> None:
    """A file can be created in ``directory`` (tried for real: ``os.access`` is always
    True for root)."""
    if not directory.is_dir():
        raise ValueError(f"{flag} {name}: {directory} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(
            f"{flag} {name}: cannot write in {directory} ({exc.strerror})"
        ) from None


def _nearest_existing(path: Path) -> Path:
    """``path``'s nearest ancestor that exists (the directory ``mkdir -p`` starts
    from)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # a dangling link on the way
            break
        parent = parent.parent
    return parent


def check_out_file(
    flag: str, name: str, suffix: str = ".pth", siblings: tuple = (".json",)
) -> Path:
    """A file a command will create or replace (a model ``OUT.pth``) and its
    ``siblings`` (same stem, other suffixes: its card): none of them a directory or a
    link, its directory writable (made if missing). Returns the path. Used by chapter
    3's ``train`` and chapter 4's ``incontext``.
    """
    path = _path(flag, name)
    if path.suffix != suffix or not path.stem:
        raise ValueError(
            f"{flag} must end in {suffix} (the card is written next to it as .json), "
            f"got {name!r}"
        )
    for each in (path, *(path.with_suffix(s) for s in siblings)):
        _refuse_odd(flag, name, each, links=False)
    _check_writable_dir(flag, name, _nearest_existing(path))
    return path


def check_out_dir(flag: str, name: str, files: tuple = ()) -> Path:
    """An output directory (made if missing) that will receive ``files`` (names relative
    to it, e.g. ``plots/a.png``): it is not a file, no file will be a directory and no
    folder on the way a file, and it is writable. Returns the path. Chapter 6.
    """
    if not name:
        raise ValueError(f"{flag} must name a directory, got ''")
    path = _path(flag, name)
    if path.is_symlink() and not path.exists():
        raise ValueError(
            f"{flag} {name}: a symbolic link to {os.readlink(path)}, which does not "
            "exist; remove the link or name another directory"
        )
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{flag} {name} is a file, not a directory; name a directory (it is made "
            "if missing)"
        )
    for file in files:
        target = path / file
        for folder in reversed(target.relative_to(path).parents[:-1]):
            if (path / folder).exists() and not (path / folder).is_dir():
                raise ValueError(
                    f"{flag} {name}: {path / folder} is a file, but a folder goes there"
                )
        if target.parent.is_dir():
            _refuse_odd(flag, name, target, links=True)
    _check_writable_dir(flag, name, path if path.is_dir() else _nearest_existing(path))
    return path


def check_ship_file(flag: str, name: str) -> Path:
    """A file a command writes alone (a copy of its results): not a directory, its
    directory exists and is writable; a link is followed to the file it points to.
    Returns the path to write (the link's target). Used by chapters 5 and 6.
    """
    if not name:
        raise ValueError(f"{flag} must name a file, got ''")
    path = _path(flag, name)
    _refuse_odd(flag, name, path, links=True)
    path = path.resolve() if path.is_symlink() else path
    if not path.parent.is_dir():
        raise ValueError(
            f"{flag} {name}: its directory {path.parent} does not exist; create it or "
            "name another file"
        )
    _check_writable_dir(flag, name, path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(
            f"{flag} {name} is read-only; make it writable or name another"
        )
    return path


def read_user_text(flag: str, name: str) -> str:
    """The text of a file a user names (UTF-8), or a ValueError saying why it cannot be
    read: missing, a directory, a dangling link, unreadable, not text. Chapter 6."""
    if not name:
        raise ValueError(f"{flag} must name a file, got ''")
    path = _path(flag, name)
    if not path.exists():
        what = "a dangling symbolic link" if path.is_symlink() else "does not exist"
        raise ValueError(f"{flag} {name}: {what}")
    if path.is_dir():
        raise ValueError(f"{flag} {name} is a directory; name a file")
    if not path.is_file():  # a fifo or a device would block or never end
        raise ValueError(f"{flag} {name} is not a regular file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{flag} {name} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{flag} {name}: cannot read it ({exc.strerror})") from None


def read_user_json(flag: str, name: str) -> Any:
    """The JSON value in a file a user names, or a ValueError naming the file and the
    line where it stops being JSON (or that it is empty). Chapter 6."""
    text = read_user_text(flag, name)
    if not text.strip():
        raise ValueError(f"{flag} {name} is empty; it must hold JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{flag} {name} is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"{flag} {name}: its JSON is nested too deeply") from None


def write_file(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (whole or not at all); an error names the
    file. Chapter 6."""
    from .atomic import write_atomically

    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    try:
        return write_atomically(path, lambda f: f.write(data))
    except OSError as exc:
        if exc.filename != str(path):  # name the file, not its temporary twin
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
