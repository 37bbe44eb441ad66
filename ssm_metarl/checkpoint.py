"""Atomic, safe checkpoints shared by every artifact the project saves.

A checkpoint is a plain dictionary of tensors and primitive values, written with
``torch.save`` and read back with ``torch.load(..., weights_only=True)``, so that
loading a file can never run code. Taught in chapter 1 (``01_state_space_models``).
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

FORMAT = "ssm_metarl.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the model."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds: its kind, its config, its weights and free-form extras."""

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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "extra": dict(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
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
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any object outside tensors and primitive containers.
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects that could run code ({detail.strip()})"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        if _looks_like_zip(path):
            raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({type(exc).__name__})") from None
        raise CheckpointError(f"{path}: not a checkpoint (not a torch file)") from None

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
    """Raise :class:`CheckpointError` naming the first field where ``found`` differs from ``expected``."""
    for key, want in expected.items():
        if key not in found:
            raise CheckpointError(f"{source}: checkpoint config has no {key!r}, model expects {key}={want!r}")
        if found[key] != want:
            raise CheckpointError(f"{source}: checkpoint has {key}={found[key]!r}, model expects {want!r}")
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise CheckpointError(f"{source}: checkpoint config has unknown fields {unknown}")


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" or zipfile.is_zipfile(path)
