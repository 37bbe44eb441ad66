"""The package's public names, folder by folder, with the chapter that teaches each.

The appendix's API reference is built from :func:`public_api` when the book is built,
so it cannot drift from the code. It walks the package with ``importlib``: the folders
above this one are imported by name, at call time, never at import time. Appendix.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass

__all__ = ["ApiEntry", "public_api", "chapter_of"]

_CHAPTER = re.compile(r"\b[Cc]hapters? (\d+)")


@dataclass(frozen=True)
class ApiEntry:
    """One public name: where it lives, what it is, and the chapter that teaches it
    (appendix)."""

    folder: str
    module: str
    name: str
    summary: str
    chapter: int | str | None


def chapter_of(doc: str) -> int | str | None:
    """The first chapter a docstring names ("chapter 3", "Chapters 1-3"), "appendix"
    for the appendix's own helpers, or None (appendix)."""
    match = _CHAPTER.search(doc or "")
    if match:
        return int(match.group(1))
    return "appendix" if "appendix" in (doc or "").lower() else None


def public_api(package: str = "ssm_metarl") -> list[ApiEntry]:
    """Every function and class a module lists in ``__all__`` and defines itself,
    sorted by folder and module; re-exports are listed where they are defined
    (appendix)."""
    root = importlib.import_module(package)
    entries = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("__main__"):  # importing it would run the command line
            continue
        module = importlib.import_module(info.name)
        parts = info.name.split(".")
        folder = parts[1] if info.ispkg is False and len(parts) > 2 else ""
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(obj) or ""
            summary = doc.split("\n\n")[0].replace("\n", " ")
            entries.append(ApiEntry(folder, parts[-1], name, summary, chapter_of(doc)))
    return sorted(entries, key=lambda e: (e.folder, e.module))
