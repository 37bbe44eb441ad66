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

The error kinds and the checks that a file fits a model live in ``checkpoint_errors``
(and are re-exported here, beside the loader that raises them). A model and its
``.json`` card are saved as one unit (``save_checkpoint(..., card=...)``), written
atomically by ``atomic``, which also checks the card on load.
Taught in chapter 1 (``01_state_space_models``).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .atomic import check_card, write_atomically
from .checkpoint_errors import (
    CheckpointError,
    DamagedCheckpointError,
    UnsafeCheckpointError,
    WrongCheckpointError,
    check_config,
    check_weights,
)
from .torchfile import inspect_torch_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "UnsafeCheckpointError",
    "DamagedCheckpointError",
    "WrongCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "check_config",
    "check_weights",
]  # the errors and check_* live in checkpoint_errors

FORMAT = "ssm_metarl.checkpoint"  # the marker in every shipped file; not a module path
VERSION = 1

_ERRORS = {
    error.category: error
    for error in (UnsafeCheckpointError, DamagedCheckpointError, WrongCheckpointError)
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
    return write_atomically(path, lambda f: torch.save(payload, f), card=card)


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
    check_card(path)
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
