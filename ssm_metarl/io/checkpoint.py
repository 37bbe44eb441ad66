"""Atomic, safe checkpoints shared by every artifact the project saves.

A checkpoint is a plain dictionary of tensors and primitive values, written with
``torch.save`` and read back with ``torch.load(..., weights_only=True)``, so that
loading a file can never run code. Before torch reads a file, its zip checksums, its
pickle's imports (read as opcodes, never run) and its tensor records are checked, so a
bad file fails with one line naming one of three kinds of failure:

- :class:`UnsafeCheckpointError`: the pickle imports a global outside torch's
  tensor-rebuild set;
- :class:`DamagedCheckpointError`: truncated, a record missing or short, a checksum that
  does not match, or a ``.json`` card whose ``weights_sha256`` names other weights;
- :class:`WrongCheckpointError`: intact but not what was asked for: another format or
  kind, a config that differs, missing or extra keys, other shapes or dtypes, NaN/inf
  values.

A model and its ``.json`` card are saved as one unit
(``save_checkpoint(..., card=...)``): the card carries the sha256 of the weights, both
are written to temporary files first and then moved into place, and a card left one step
behind by a kill is detected (and, when the killed save's card is still there,
completed) on load. Stale temporary files of killed saves are removed by the next save.
Taught in chapter 1 (``01_state_space_models``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .torchfile import inspect_torch_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "UnsafeCheckpointError",
    "DamagedCheckpointError",
    "WrongCheckpointError",
    "save_checkpoint",
    "save_json",
    "load_checkpoint",
    "check_config",
    "check_weights",
    "file_sha256",
]

FORMAT = "ssm_metarl.checkpoint"  # the marker in every shipped file; not a module path
VERSION = 1
CARD_HASH = "weights_sha256"  #: the card field holding the sha256 of its ``.pth``


class CheckpointError(ValueError):
    """A checkpoint file is missing, unsafe, damaged or wrong for its use. Defined in
    chapter 1."""

    category = "missing"


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle imports a global that could run code; nothing was loaded
    (chapter 1)."""

    category = "unsafe"


class DamagedCheckpointError(CheckpointError):
    """The file is truncated, lacks or shortens a record, fails a checksum, or its card
    names other weights (chapter 1)."""

    category = "damaged"


class WrongCheckpointError(CheckpointError):
    """The file is intact but is not what the caller expects (format, kind, config,
    keys, shapes, NaN/inf; chapter 1)."""

    category = "wrong"


_ERRORS = {
    "unsafe": UnsafeCheckpointError,
    "damaged": DamagedCheckpointError,
    "wrong": WrongCheckpointError,
}


@dataclass
class Checkpoint:
    """What a checkpoint file holds: its kind, its config, its weights and free-form
    extras (chapter 1)."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: to a temporary file first, then ``os.replace``,
    then fsync the directory.

    A crash part-way through leaves the previous file untouched, never a half-written
    one. ``config`` and ``extra`` may hold only tensors, numbers, strings, None, lists,
    tuples and dicts: anything else (a numpy float, a dataclass) would make the file
    unloadable under ``weights_only=True``, so it is refused here, before anything is
    written. With ``card``, ``PATH.json`` is written beside it with ``weights_sha256``
    added (checked on load). Defined in chapter 1.
    """
    path = Path(path)
    if not isinstance(kind, str) or not kind:
        raise ValueError(
            "kind must be a non-empty string naming what is saved (e.g. "
            f"'StateSpaceModel'), got {kind!r}"
        )
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor)
        for k, v in state_dict.items()
    ):
        raise ValueError(
            "state_dict must map str names to tensors (e.g. model.state_dict())"
        )
    _check_plain(dict(config), "config")
    _check_plain(dict(extra or {}), "extra")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "extra": dict(extra or {}),
    }
    if card is None:
        return _commit([(path, _write_tmp(path, lambda f: torch.save(payload, f)))])
    card_path = path.with_suffix(".json")
    weights = _write_tmp(path, lambda f: torch.save(payload, f))
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
    path = Path(path)
    return _commit([(path, _write_tmp(path, lambda f: f.write(text.encode())))])


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex: what a card's ``weights_sha256`` holds
    (chapter 3)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if not (pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid))):
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


def _alive(pid: int) -> bool:
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


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    expected_config: Mapping[str, Any] | None = None,
    allow_nonfinite: bool = False,
) -> Checkpoint:
    """Read a checkpoint safely and check that it is what the caller expects.

    Every failure raises one of the three :class:`CheckpointError` kinds with one line
    naming the problem. NaN or inf in any tensor is an error unless
    ``allow_nonfinite=True``. If a ``.json`` card with a ``weights_sha256`` sits beside
    the file, the file must match it. Defined in chapter 1 (``01_state_space_models``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    # unsafe, damaged or not a torch file: found before torch reads anything
    problem = inspect_torch_file(path)
    if problem is not None:
        raise _ERRORS[problem[0]](f"{path}: {problem[1]}")
    _check_card(path)
    try:
        # torch warns about the pickle protocol of foreign files
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:150]
        if "Unsupported global" in str(exc) or "weights_only" in first:
            raise UnsafeCheckpointError(f"{path}: refused to load: {first}") from None
        raise DamagedCheckpointError(
            f"{path}: the checkpoint is corrupt ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WrongCheckpointError(
            f"{path}: not an ssm_metarl checkpoint (missing format marker {FORMAT!r})"
        )
    if payload.get("version") != VERSION:
        raise WrongCheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r}, this code reads "
            f"{VERSION}"
        )
    for key, typ in (
        ("kind", str),
        ("config", dict),
        ("state_dict", dict),
        ("extra", dict),
    ):
        if not isinstance(payload.get(key), typ):
            raise WrongCheckpointError(
                f"{path}: not an ssm_metarl checkpoint (field {key!r} is missing or "
                "malformed)"
            )
    if kind is not None and payload["kind"] != kind:
        raise WrongCheckpointError(
            f"{path}: checkpoint holds a {payload['kind']}, expected a {kind}"
        )
    if not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise WrongCheckpointError(
            f"{path}: its state_dict holds values that are not tensors"
        )
    bad = (
        []
        if allow_nonfinite
        else _nonfinite(
            {"state_dict": payload["state_dict"], "extra": payload["extra"]}, ""
        )
    )
    if bad:
        where = ", ".join(
            f"{name} has {n} of {total}" for name, n, total in bad[:3]
        ) + (" ..." if len(bad) > 3 else "")
        raise WrongCheckpointError(
            f"{path}: {sum(n for _, n, _ in bad)} NaN/inf values in {len(bad)} "
            "tensor(s) "
            f"({where}); refusing to load them (pass allow_nonfinite=True to inspect "
            "the file)"
        )
    if expected_config is not None:
        check_config(payload["config"], expected_config, source=str(path))
    return Checkpoint(
        payload["kind"], payload["config"], payload["state_dict"], payload["extra"]
    )


def _check_card(path: Path) -> None:
    """If ``path``'s ``.json`` card records a sha256, the file must match it (a killed
    save may have left the card one step behind; if that save's own card is still beside
    it, the save is completed)."""
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


def check_config(
    found: Mapping[str, Any], expected: Mapping[str, Any], *, source: str = "checkpoint"
) -> None:
    """Raise :class:`WrongCheckpointError` naming the first field where ``found``
    differs from ``expected`` (chapter 1)."""
    for key, want in expected.items():
        if key not in found:
            raise WrongCheckpointError(
                f"{source}: checkpoint config has no {key!r}, model expects "
                f"{key}={want!r}"
            )
        if found[key] != want:
            raise WrongCheckpointError(
                f"{source}: checkpoint has {key}={found[key]!r}, model expects {want!r}"
            )
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise WrongCheckpointError(
            f"{source}: checkpoint config has unknown fields {unknown}"
        )


def check_weights(
    found: Mapping[str, Any],
    expected: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
) -> None:
    """Raise :class:`WrongCheckpointError` unless ``found`` has exactly ``expected``'s
    keys, shapes and dtypes.

    The message names the keys (with their shapes) that are missing, extra or different,
    so nothing is silently cast (int64 or complex weights into a float32 model).
    Chapter 1.
    """

    def shape(t):
        return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__

    missing = [f"{k} {shape(v)}" for k, v in expected.items() if k not in found]
    extra = [f"{k} {shape(v)}" for k, v in found.items() if k not in expected]
    if missing or extra:
        raise WrongCheckpointError(
            f"{source}: weights do not fit the model: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    for key, want in expected.items():
        got = found[key]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise WrongCheckpointError(
                f"{source}: weights do not fit the model: {key} is {shape(got)} in the "
                "file, "
                f"{shape(want)} in the model"
            )
        if got.dtype != want.dtype:
            raise WrongCheckpointError(
                f"{source}: weights do not fit the model: {key} has dtype {got.dtype} "
                "in the "
                f"file, {want.dtype} in the model (convert the file's weights "
                "explicitly)"
            )


# exact types: numpy's float64 subclasses float but won't load
_PLAIN_TYPES = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Raise ValueError if ``value`` holds anything ``torch.load(weights_only=True)``
    would refuse."""
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ValueError(
                    f"{where} has a key of type {type(key).__name__}; use str or int "
                    "keys"
                )
            _check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in _PLAIN_TYPES or isinstance(value, torch.Tensor)):
        raise ValueError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}; "
            "checkpoints hold only "
            "tensors, numbers, strings, None, lists and dicts (convert it, e.g. "
            "float(x) or x.tolist())"
        )


def _nonfinite(tree: Any, where: str) -> list[tuple[str, int, int]]:
    """(name, count, numel) of every floating or complex tensor in ``tree`` that holds
    NaN or inf."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() or tree.is_complex():
            n = int((~torch.isfinite(tree)).sum())
            return [(where.lstrip("."), n, tree.numel())] if n else []
        return []
    items = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, (list, tuple))
        else ()
    )
    return [bad for key, item in items for bad in _nonfinite(item, f"{where}.{key}")]
