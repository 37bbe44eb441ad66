"""Atomic, safe checkpoints shared by every artifact the project saves.

A checkpoint is a plain dictionary of tensors and primitive values, written with
``torch.save`` and read back with ``torch.load(..., weights_only=True)``, so that
loading a file can never run code. Taught in chapter 1 (``01_state_space_models``).
"""
from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "save_json", "load_checkpoint", "check_config"]

FORMAT = "ssm_metarl.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the model. Defined in chapter 1."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds: its kind, its config, its weights and free-form extras (chapter 1)."""

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
) -> Path:
    """Write a checkpoint atomically: to a temporary file first, then ``os.replace``.

    A crash part-way through leaves the previous file untouched, never a half-written one.
    ``config`` and ``extra`` may hold only tensors, numbers, strings, None, lists, tuples and
    dicts: anything else (a numpy float, a dataclass) would make the file unloadable under
    ``weights_only=True``, so it is refused here, before anything is written. Defined in chapter 1.
    """
    path = Path(path)
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
    return _atomic_write(path, lambda f: torch.save(payload, f))


def save_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as an indented JSON file atomically, like a checkpoint (a model's ``.json`` card; chapter 3)."""
    text = json.dumps(data, indent=1) + "\n"
    return _atomic_write(Path(path), lambda f: f.write(text.encode()))


def _atomic_write(path: Path, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it over ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    expected_config: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Read a checkpoint safely and check that it is what the caller expects.

    Every failure raises :class:`CheckpointError` with one line that names the problem.
    Defined in chapter 1 (``01_state_space_models``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise CheckpointError(f"{path}: {_diagnose(path, exc)}") from None

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ssm_metarl checkpoint (missing format marker {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}, this code reads {VERSION}")
    for key, typ in (("kind", str), ("config", dict), ("state_dict", dict), ("extra", dict)):
        if not isinstance(payload.get(key), typ):
            raise CheckpointError(f"{path}: not an ssm_metarl checkpoint (field {key!r} is missing or malformed)")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path}: checkpoint holds a {payload['kind']}, expected a {kind}")
    if expected_config is not None:
        check_config(payload["config"], expected_config, source=str(path))
    return Checkpoint(payload["kind"], payload["config"], payload["state_dict"], payload["extra"])


def check_config(found: Mapping[str, Any], expected: Mapping[str, Any], *, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first field where ``found`` differs from ``expected`` (chapter 1)."""
    for key, want in expected.items():
        if key not in found:
            raise CheckpointError(f"{source}: checkpoint config has no {key!r}, model expects {key}={want!r}")
        if found[key] != want:
            raise CheckpointError(f"{source}: checkpoint has {key}={found[key]!r}, model expects {want!r}")
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise CheckpointError(f"{source}: checkpoint config has unknown fields {unknown}")


_PLAIN_TYPES = (str, int, float, bool, type(None))  # exact types: numpy's float64 subclasses float but won't load
_SAFE_GLOBALS = ("torch._utils._rebuild", "torch.serialization._get_layout", "collections.OrderedDict")


def _check_plain(value: Any, where: str) -> None:
    """Raise ValueError if ``value`` holds anything ``torch.load(weights_only=True)`` would refuse."""
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ValueError(f"{where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in _PLAIN_TYPES or isinstance(value, torch.Tensor)):
        raise ValueError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold only "
                         "tensors, numbers, strings, None, lists and dicts (convert it, e.g. float(x) or x.tolist())")


def _diagnose(path: Path, exc: Exception) -> str:
    """Say in one line why ``torch.load(path, weights_only=True)`` failed with ``exc``."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # torch's zip format
        if not zipfile.is_zipfile(path):
            return "the checkpoint is truncated (its zip archive has no end record)"
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
            if not pickles:
                return "not a checkpoint (a zip archive without torch data)"
            try:
                code = _imports(archive.read(pickles[0]))
            except zipfile.BadZipFile as bad:  # e.g. a checksum that no longer matches the bytes
                return f"the checkpoint is corrupt ({bad})"
    elif head[:1] == b"\x80":  # a raw pickle stream: torch's legacy format or pickle.dump
        code = _imports(path.read_bytes())
    else:
        return "not a checkpoint (not a torch file)"
    blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the global it refused
    unsafe = [blocked.group(1)] if blocked else [name for name in code if not name.startswith(_SAFE_GLOBALS)]
    if unsafe:
        return (f"refused to load: the file's pickle imports {', '.join(unsafe[:3])}, "
                "which could run code; only weights are loaded (weights_only=True)")
    if isinstance(exc, pickle.UnpicklingError) and not code and head != b"PK\x03\x04":
        return "not a checkpoint (a plain pickle, not a torch file)"
    first = (str(exc).strip().splitlines() or [""])[0][:120]
    return f"the checkpoint is corrupt ({type(exc).__name__}: {first})"


def _imports(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle would import, found by reading its opcodes without running them."""
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:  # module and name pushed before it
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a damaged stream: report what was readable before the damage
        pass
    return found
