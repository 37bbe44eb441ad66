"""How a checkpoint can fail: the error kinds, and the checks that a file fits a model.

Every failure to load a checkpoint is one :class:`CheckpointError` with a one-line
message. Its subclass names the kind of failure, so a caller can tell a file to refuse
(unsafe), a file to restore (damaged) and a file meant for something else (wrong).
:func:`check_config` and :func:`check_weights` say, field by field and key by key, why
an intact checkpoint does not fit the model it is loaded into.
Taught in chapter 1 (``01_state_space_models``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "DamagedCheckpointError",
    "WrongCheckpointError",
    "check_config",
    "check_weights",
]


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
