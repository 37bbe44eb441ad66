"""Progress bars that cost nothing, and warn about nothing, when switched off."""
from __future__ import annotations


def progress_bar(iterable=None, enabled: bool = True, **kwargs):
    """A ``tqdm`` bar over ``iterable``; a silent one when ``enabled`` is False.

    ``tqdm.auto`` warns on import inside Jupyter when ipywidgets is missing, so it is only
    imported when a bar is actually shown; the chapters run with bars off.
    """
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not enabled, **kwargs)
