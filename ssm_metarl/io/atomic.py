"""Atomic files: written whole or not at all, and a model written with its card as one
unit.

A file is written to a temporary file beside it, fsynced, moved into place with
``os.replace`` and its directory fsynced, so a crash part-way through leaves the
previous file, never a half-written one. A model's weights and its ``.json`` card are
one unit: the card records the sha256 of the weights (``weights_sha256``), both are
written to temporary files first and then moved in order, and :func:`check_card` tells
on load whether a card describes other weights (and completes a save killed between the
two moves). Temporary files of killed saves are removed by the next save.
Taught in chapter 1 (``01_state_space_models``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from .checkpoint_errors import DamagedCheckpointError

__all__ = [
    "write_atomically",
    "save_json",
    "file_sha256",
    "check_card",
    "process_alive",
    "CARD_HASH",
]

CARD_HASH = "weights_sha256"  #: the card field holding the sha256 of its ``.pth``


def write_atomically(
    path: str | os.PathLike,
    write: Callable,
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` by calling ``write(file)`` on a temporary file, then move it into
    place (see the module's docstring); return ``path``.

    With ``card``, ``PATH.json`` is written beside it, with ``weights_sha256`` (the
    sha256 of the new file) added to the card; the two move into place as one unit.
    Defined in chapter 1 (``01_state_space_models``).
    """
    path = Path(path)
    if card is None:
        return _commit([(path, _write_tmp(path, write))])
    card_path = path.with_suffix(".json")
    weights = _write_tmp(path, write)
    try:
        text = (
            json.dumps({**dict(card), CARD_HASH: file_sha256(weights)}, indent=1) + "\n"
        )
        card_tmp = _write_tmp(card_path, lambda f: f.write(text.encode()))
    except BaseException:
        _unlink(weights)
        raise
    return _commit([(path, weights), (card_path, card_tmp)])


def save_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as an indented JSON file atomically, like a checkpoint (a model's
    ``.json`` card; chapter 3)."""
    text = json.dumps(data, indent=1) + "\n"
    return write_atomically(path, lambda f: f.write(text.encode()))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex: what a card's ``weights_sha256`` holds
    (chapter 3)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_card(path: str | os.PathLike) -> None:
    """If ``path``'s ``.json`` card records a sha256, the file must match it (a killed
    save may have left the card one step behind; if that save's own card is still beside
    it, the save is completed). Chapter 1.
    """
    path = Path(path)
    card = path.with_suffix(".json")
    if path.suffix != ".pth" or not card.is_file():
        return
    try:
        data = json.loads(card.read_text())
    # cards are written atomically: this is damage
    except (ValueError, UnicodeDecodeError) as bad:
        raise DamagedCheckpointError(
            f"{card}: the model's card is not a JSON object ({bad})"
        ) from None
    want = data.get(CARD_HASH) if isinstance(data, dict) else None
    if want is None:
        # no card of ours, or one without a hash (written by hand or by an older
        # version)
        return
    have = file_sha256(path)
    if have == want:
        return
    for pending in sorted(path.parent.glob(glob.escape(f".{card.name}.") + "*.tmp")):
        try:
            if json.loads(pending.read_text()).get(CARD_HASH) == have:
                # the killed save had written this card: complete it
                os.replace(pending, card)
                _fsync_dir(path.parent)
                return
        except (OSError, ValueError, AttributeError):
            continue
    raise DamagedCheckpointError(
        f"{path}: its card {card.name} describes other weights (sha256 {want[:12]}..., "
        "the "
        f"file has {have[:12]}...): a save was interrupted or one file was replaced; "
        "restore both files together or re-run the card's command"
    )


def _write_tmp(path: Path, write) -> str:
    """Remove stale temporary files of ``path``, then call ``write(file)`` on a new one
    beside it (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(
        os.path.join(
            glob.escape(str(path.parent)), glob.escape(f".{path.name}.") + "*.tmp"
        )
    ):
        pid = Path(stale).name[len(path.name) + 2 :].split(".")[0]
        # a killed save's leftover
        if not (pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid))):
            _unlink(stale)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; give it the usual
        # permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _commit(moves: list[tuple[Path, str]]) -> Path:
    """Move each temporary file over its target, in order, and fsync the directory;
    return the first target."""
    done = 0
    try:
        for path, tmp in moves:
            os.replace(tmp, path)
            done += 1
    finally:
        if done == 0:  # nothing replaced yet: the old files stay a consistent pair
            for _, tmp in moves:
                _unlink(tmp)
        else:  # the weights moved: finish the card too, so the pair stays in step
            for path, tmp in moves[done:]:
                os.replace(tmp, path)
        _fsync_dir(moves[0][0].parent)
    return moves[0][0]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine: a temporary file or a run
    state it left behind may then still be in use (chapters 1 and 5)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
