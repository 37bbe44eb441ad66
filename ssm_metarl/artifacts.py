"""Find shipped artifacts in ``models/`` from anywhere a reader runs a chapter.

Chapters call :func:`artifact_path` instead of writing relative paths, so the same
cell works from ``book/`` (Jupyter Book), ``notebooks/`` (nbmake, Jupyter), the
repository root, an installed package, or Google Colab.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["models_dir", "artifact_path", "COLAB_CLONE"]

#: Where the chapters' first cell clones the repository inside Colab.
COLAB_CLONE = Path("/content/SSM-MetaRL")
ENV_VAR = "SSM_METARL_MODELS"


def _candidates() -> list[Path]:
    found = []
    if os.environ.get(ENV_VAR):
        found.append(Path(os.environ[ENV_VAR]))
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / "ssm_metarl").is_dir() or (directory / "pyproject.toml").is_file():
            found.append(directory / "models")
    # An editable install or a checkout: the package sits next to models/.
    found.append(Path(__file__).resolve().parent.parent / "models")
    found.append(COLAB_CLONE / "models")
    return found


def models_dir() -> Path:
    """The first existing ``models/`` directory among the places listed in the error message."""
    candidates = _candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    searched = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"no models/ directory found (searched {searched}); run from a clone of the book's "
        f"repository or set {ENV_VAR}"
    )


def artifact_path(name: str) -> Path:
    """Path of the shipped artifact ``name`` (e.g. ``"cartpole_hybrid_real_model.pth"``)."""
    path = models_dir() / name
    if not path.exists():
        available = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
        raise FileNotFoundError(f"{name} is not in {path.parent}; available: {available}")
    return path
