"""Progress bars that cost nothing, and warn about nothing, when switched off;
training-log rows.

Used by the training loops of chapters 2 and 3.
"""

from __future__ import annotations

__all__ = ["progress_bar", "log_row"]


def progress_bar(iterable=None, enabled: bool = True, **kwargs):
    """A ``tqdm`` bar over ``iterable``; a silent one when ``enabled`` is False
    (chapters 2-3).

    ``tqdm.auto`` warns on import inside Jupyter when ipywidgets is missing, so it is
    only imported when a bar is actually shown; the chapters run with bars off.
    """
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not enabled, **kwargs)


def log_row(history: dict[str, list], **row) -> None:
    """Append one row to a column-wise training log: ``history[key]`` gets ``row[key]``
    (chapters 2-3)."""
    for key, value in row.items():
        history.setdefault(key, []).append(value)
