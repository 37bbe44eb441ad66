"""Argument checks shared by every config and function: one message per kind of mistake.

Each check raises ``ValueError`` naming the field, the value it got and what it needs.
Used by every chapter's configs (first in chapter 1, ``01_state_space_models``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_positive",
    "check_unit_interval",
    "check_choice",
    "check_bool",
    "check_range",
    "check_actions",
    "check_model_input",
]


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) ``>= minimum``; else a
    ValueError naming ``name``.

    ``minimum=1`` is the positive-int check. Defined for chapter 1
    (``01_state_space_models``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        need = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return int(value)


def check_positive(name: str, value, finite: bool = True) -> float:
    """``value`` as a float if it is a number > 0 (and finite, unless ``finite=False``:
    e.g. a time budget of ``inf``); else a ValueError naming ``name`` (chapter 2)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value > 0
        or (finite and math.isinf(value))
    ):
        raise ValueError(
            f"{name} must be a positive{' finite' if finite else ''} number, got "
            f"{value!r}"
        )
    return float(value)


def check_unit_interval(name: str, value) -> float:
    """``value`` if it lies in [0, 1] (a discount, a GAE lambda); else a ValueError
    naming ``name`` (chapter 2)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``; else a ValueError listing them
    (chapter 2)."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {tuple(choices)}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False (a numpy bool too); else a ValueError:
    ``bounded='no'`` is not a bool (chapter 1)."""
    if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_range(name: str, value, low: float, high: float) -> float:
    """``value`` as a float if it is a real number in [low, high] (NaN never is); else a
    ValueError naming ``name``, the value and the range (chapter 2)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not low <= value <= high
    ):
        raise ValueError(
            f"{name} must be a number in [{low:g}, {high:g}], got {value!r}"
        )
    return float(value)


def check_actions(action, n: int | None = None):
    """CartPole actions: one int (``n=None``) or an int array of ``n``, each 0 (push
    left) or 1 (push right); else one ValueError naming the value (and its index).
    Chapter 2.
    """
    a = np.asarray(action)
    need = (
        "an action, 0 (push left) or 1 (push right)"
        if n is None
        else f"{n} actions, each 0 (push left) or 1 (push right)"
    )
    if a.shape != (() if n is None else (n,)) or a.dtype.kind not in "iu":
        raise ValueError(
            f"need {need}; got {action!r} (shape {a.shape}, dtype {a.dtype})"
        )
    wrong = np.flatnonzero((a != 0) & (a != 1))
    if wrong.size:
        raise ValueError(
            f"need {need}; got {a.reshape(-1)[wrong[0]]}"
            + ("" if n is None else f" at index {wrong[0]}")
        )
    return int(a) if n is None else a


def check_model_input(name: str, x, weight: torch.Tensor, shape: str) -> None:
    """A one-line error for a model input that is not a tensor, has another dtype than
    the model's ``weight`` or is empty; ``shape`` (e.g. ``"(B, 4)"``) goes into the
    message. Chapter 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype={weight.dtype})"
        )
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's weights are {weight.dtype}; "
            f"pass {name}.to({weight.dtype}) (or convert the model)"
        )
    if x.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); pass at least one time step "
            f"and one row: {shape}"
        )
