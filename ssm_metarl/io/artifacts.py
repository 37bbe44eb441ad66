"""Shipped artifacts in ``models/``: find them from anywhere a chapter runs, read their
cards, or train a small one.

Chapters call :func:`artifact_path` instead of writing relative paths, so the same
cell works from ``book/`` (Jupyter Book), ``notebooks/`` (nbmake, Jupyter), the
repository root, an installed package, or Google Colab. :func:`load_or_train` loads a
shipped model if present and otherwise trains a small one and says so (chapters 1-3).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "models_dir",
    "artifact_path",
    "load_card",
    "load_or_train",
    "Loaded",
    "COLAB_CLONE",
    "ALIASES",
]

log = logging.getLogger(__name__)

#: Old artifact names that still resolve: the model card's name for the goal-family
#: MAML model.
ALIASES = {"cartpole_hybrid_real_model": "cartpole_goal_maml"}

#: Where the chapters' first cell clones the repository inside Colab.
COLAB_CLONE = Path("/content/SSM-MetaRL")
ENV_VAR = "SSM_METARL_MODELS"


def _candidates() -> list[Path]:
    found = []
    if os.environ.get(ENV_VAR):
        found.append(Path(os.environ[ENV_VAR]))
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / "ssm_metarl").is_dir() or (
            directory / "pyproject.toml"
        ).is_file():
            found.append(directory / "models")
    # An editable install or a checkout: the package sits next to models/.
    found.append(Path(__file__).resolve().parents[2] / "models")
    found.append(COLAB_CLONE / "models")
    return found


def models_dir() -> Path:
    """The first existing ``models/`` directory among the places listed in the error
    message (chapter 0)."""
    candidates = _candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    searched = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"no models/ directory found (searched {searched}); run from a clone of the "
        "book's "
        f"repository or set {ENV_VAR}"
    )


def _resolve(name: str) -> str:
    """``name`` with an old stem from :data:`ALIASES` replaced by the current one."""
    stem, dot, suffix = name.partition(".")
    return ALIASES.get(stem, stem) + dot + suffix


def artifact_path(name: str) -> Path:
    """Path of the shipped artifact ``name`` (e.g. ``"cartpole_goal_maml.pth"``); the
    old names in :data:`ALIASES` (``"cartpole_hybrid_real_model.pth"``) resolve to the
    current files. Chapter 0.
    """
    path = models_dir() / _resolve(name)
    if not path.exists():
        available = sorted(
            p.name for p in path.parent.iterdir() if not p.name.startswith(".")
        )
        raise FileNotFoundError(
            f"{name} is not in {path.parent}; available: {available}"
        )
    return path


def load_card(name: str) -> dict:
    """The ``.json`` card of a shipped artifact (``name`` with or without ``.json``):
    its command, training log and evaluation. Defined in chapter 3 (``03_maml``)."""
    name = name if name.endswith(".json") else name.rsplit(".pth", 1)[0] + ".json"
    return json.loads(artifact_path(name).read_text())


@dataclass
class Loaded:
    """What :func:`load_or_train` returned: the object, whether it was trained here, and
    from where (chapter 3)."""

    value: Any
    trained: bool  # True: no shipped file was found, a small one was trained now
    source: str  # the shipped file's path, or "trained now"


def load_or_train(
    name: str, train: Callable[[], Any], load: Callable[[Path], Any]
) -> Loaded:
    """Load the shipped artifact ``name`` with ``load(path)`` if it exists; otherwise
    call ``train()`` (a short run the caller chooses) and log that it did. Either way
    the result says which happened, so a chapter can tell the reader. Defined in
    chapter 3 (``03_maml``).
    """
    try:
        path = artifact_path(name)
    except FileNotFoundError as missing:
        log.warning("%s; training a small one instead", missing)
        return Loaded(train(), True, "trained now")
    return Loaded(load(path), False, str(path))
