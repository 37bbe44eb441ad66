"""Bookkeeping for the chapters: glue measured numbers into the prose, and render
results tables.

Used by every chapter from chapter 0 (``00_quick_tour``) on. The chapters call these two
helpers in cells the reader does not see (tagged ``remove-cell`` or ``remove-input``),
so the page shows the computation and its result, not the plumbing.

- :func:`glue_all` glues a number, an :class:`~ssm_metarl.report.stats.Estimate` or a
  dict of them at once, under predictable names (``prefix_mean``, ``prefix_low``, ...).
- :func:`results_table` builds the "What we measured" table that ends every chapter.

``myst_nb`` and ``IPython`` are imported only when a helper runs, so
``import ssm_metarl`` stays light outside a notebook.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .stats import Estimate

__all__ = ["glue_all", "format_value", "results_table", "RESULTS_COLUMNS"]

#: The columns of a chapter's "What we measured" table.
RESULTS_COLUMNS = ("quantity", "measured (95% CI)", "compared against")


def _scalar(value: Any) -> Any:
    """Plain Python numbers for numpy and torch scalars; anything else unchanged."""
    if (
        hasattr(value, "item")
        and callable(value.item)
        and getattr(value, "ndim", 0) == 0
    ):
        return value.item()
    return value


def format_value(value: Any, digits: int = 1) -> str:
    """One cell of text for prose or a table.

    An :class:`Estimate` reads ``mean [low, high]``; an integer gets thousands
    separators (``40,100``); a float gets ``digits`` decimals, or two significant digits
    when those decimals would show a non-zero number as zero (``0.003``); text is left
    as it is. Used from chapter 0 on.
    """
    value = _scalar(value)
    if isinstance(value, Estimate):
        return (
            f"{value.mean:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"
        )
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        text = f"{float(value):,.{digits}f}"
        if float(value) != 0 and float(text.replace(",", "")) == 0:
            # never show a non-zero number as 0.0 (a step size of 0.003)
            return f"{float(value):.2g}"
        return text
    return str(value)


def _flatten(prefix: str, value: Any, digits: int) -> dict[str, Any]:
    """The names and values that :func:`glue_all` glues for one value."""
    value = _scalar(value)
    if isinstance(value, Estimate):
        return {
            f"{prefix}_mean": value.mean,
            f"{prefix}_low": value.low,
            f"{prefix}_high": value.high,
            f"{prefix}_n": value.n,
            f"{prefix}_ci": f"[{value.low:.{digits}f}, {value.high:.{digits}f}]",
            prefix: format_value(value, digits),
        }
    if isinstance(value, Mapping):
        names: dict[str, Any] = {}
        for key, item in value.items():
            names.update(_flatten(f"{prefix}_{key}", item, digits))
        return names
    if isinstance(value, bool):
        return {prefix: format_value(value)}
    if isinstance(value, numbers.Integral):
        return {prefix: int(value)}
    if isinstance(value, numbers.Real):
        return {prefix: float(value)}
    if isinstance(value, str):
        return {prefix: value}
    raise TypeError(
        f"glue_all({prefix!r}, ...) takes a number, a string, an Estimate or a dict of "
        "them; "
        f"got {type(value).__name__}. Glue figures and tables with myst_nb.glue "
        "directly."
    )


def glue_all(
    prefix: str, value: Any, digits: int = 1, glue: Callable | None = None
) -> dict[str, Any]:
    """Glue a measured value for the prose, without displaying it; return what was
    glued.

    - a number or a string is glued as ``prefix``;
    - an :class:`Estimate` as ``prefix_mean``, ``prefix_low``, ``prefix_high``,
      ``prefix_n`` (numbers, formatted in the prose:
      ``{glue:text}`prefix_mean:.1f```), ``prefix_ci`` (the text ``[low,
      high]``) and ``prefix`` (the text ``mean [low, high]``), both with ``digits``
      decimals;
    - a dict as ``prefix_key`` for each of its keys, recursively (so a dict of
      Estimates gives ``prefix_key_mean``, ...).

    Numpy and torch scalars become plain Python numbers. ``glue`` replaces
    ``myst_nb.glue`` (the tests pass a recorder). Without myst-nb (in Colab) nothing is
    glued and the names are still returned. Used from chapter 0 on.
    """
    if not prefix or not prefix.replace("_", "a").isalnum():
        raise ValueError(
            f"glue names are letters, digits and underscores; got prefix {prefix!r}"
        )
    names = _flatten(prefix, value, digits)
    glue = glue or _myst_nb_glue()
    if glue is not None:
        for name, item in names.items():
            glue(name, item, display=False)
    return names


def _myst_nb_glue():
    """``myst_nb.glue``, or None where myst-nb is not installed (Colab, a plain
    Jupyter).

    Gluing only matters when Jupyter Book builds the page; a reader running the notebook
    elsewhere sees the computed values in the cells' own outputs.
    """
    try:
        from myst_nb import glue
    except ImportError:
        return None
    return glue


def results_table(
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    columns: Sequence[str] = RESULTS_COLUMNS,
    digits: int = 1,
):
    """A chapter's "What we measured" table, as an ``IPython.display.Markdown`` pipe
    table.

    ``rows`` are sequences in the order of ``columns``, or dicts keyed by column name (a
    missing key leaves the cell empty). Cells go through :func:`format_value`, so an
    :class:`Estimate` reads ``mean [low, high]``. Display it from a ``remove-input``
    cell, or glue it and paste it with ``{glue:md}`` and ``:format: myst``. Used from
    chapter 0 on.
    """
    from IPython.display import Markdown

    columns = [str(c) for c in columns]
    if not columns:
        raise ValueError("results_table needs at least one column")
    header = [c.replace("|", "\\|") for c in columns]  # a bare | would split the column
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            unknown = set(row) - set(columns)
            if unknown:
                raise ValueError(
                    f"row {i} has keys {sorted(unknown)} that are not columns {columns}"
                )
            cells = [row.get(c, "") for c in columns]
        else:
            cells = list(row)
            if len(cells) != len(columns):
                raise ValueError(
                    f"row {i} has {len(cells)} cells but there are {len(columns)} "
                    "columns"
                )
        text = [
            format_value(c, digits).replace("|", "\\|").replace("\n", " ")
            for c in cells
        ]
        lines.append("| " + " | ".join(text) + " |")
    return Markdown("\n".join(lines))
