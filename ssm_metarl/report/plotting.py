"""The book's figures: one style, CI plots and learning curves.

Used by every chapter from chapter 0 (``00_quick_tour``) on:

- :func:`use_book_style` and :data:`COLORS`: one look and one colour per role
  everywhere;
- :func:`errorbar_ci` and :func:`band_ci`: means with their 95% confidence intervals
  (adaptation curves, chapter 3's sine and hidden-goal figures);
- :func:`smooth` and :func:`smoothed_curve`: noisy training curves (chapters 2 and 3);
- :func:`glue_figure`: glue a figure for a ``{glue:figure}`` and close it, so no chapter
  cell ends with ``plt.close(fig)``.

The CartPole animation lives with CartPole, in :mod:`ssm_metarl.cartpole.animation`.
``IPython`` and ``myst_nb`` are imported only when a helper that needs them runs.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

from .figure_style import DPI, figure_problems

__all__ = [
    "COLORS",
    "use_book_style",
    "errorbar_ci",
    "band_ci",
    "smooth",
    "smoothed_curve",
    "glue_figure",
    "figure_problems",
]

#: One colour per role, kept the same across chapters (colour-blind safe, Okabe-Ito).
COLORS = {
    "random": "#999999",
    "baseline": "#E69F00",
    "ssm": "#0072B2",
    "maml": "#009E73",
    "oracle": "#000000",
    "highlight": "#D55E00",
    "alt": "#CC79A7",
}


def use_book_style() -> None:
    """Set matplotlib defaults for the book: readable sizes, light grid, no top/right
    spines, drawn at the book's :data:`~ssm_metarl.report.figure_style.DPI`. Used from
    chapter 0 on."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "legend.frameon": False,
        }
    )


def _bounds(estimates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, lows and highs of a sequence of
    :class:`~ssm_metarl.report.stats.Estimate`."""
    estimates = list(estimates)
    if not estimates:
        raise ValueError("need at least one Estimate to plot")
    mean = np.array([e.mean for e in estimates], dtype=float)
    low = np.array([e.low for e in estimates], dtype=float)
    high = np.array([e.high for e in estimates], dtype=float)
    if np.any(low > mean) or np.any(high < mean):
        raise ValueError("every Estimate must have low <= mean <= high")
    return mean, low, high


def errorbar_ci(ax, x, estimates, **kwargs):
    """Plot means with asymmetric 95% CI error bars (one marker per ``x``); return the
    container.

    ``estimates`` is a sequence of :class:`~ssm_metarl.report.stats.Estimate`, one per
    ``x``. Keyword arguments go to ``ax.errorbar`` (defaults: round markers, capped
    bars). Used for returns after 0, 1, 3, 5 adaptation steps and MSE after 0, 1, 10
    steps (chapter 3).
    """
    mean, low, high = _bounds(estimates)
    if len(x) != len(mean):
        raise ValueError(f"{len(x)} x values but {len(mean)} estimates")
    kwargs = {"marker": "o", "capsize": 3, **kwargs}
    return ax.errorbar(
        np.asarray(x), mean, yerr=np.vstack([mean - low, high - mean]), **kwargs
    )


def band_ci(ax, x, estimates, alpha: float = 0.2, **kwargs):
    """Plot the mean as a line and its 95% CI as a shaded band; return the line.

    For curves with many points (returns over training, over adaptation episodes).
    Keyword arguments go to ``ax.plot``; the band takes the line's colour. Chapters 3
    and 4.
    """
    mean, low, high = _bounds(estimates)
    if len(x) != len(mean):
        raise ValueError(f"{len(x)} x values but {len(mean)} estimates")
    (line,) = ax.plot(np.asarray(x), mean, **kwargs)
    ax.fill_between(
        np.asarray(x), low, high, color=line.get_color(), alpha=alpha, linewidth=0
    )
    return line


def smooth(values, width: int = 5) -> np.ndarray:
    """Moving average over ``width`` points ("valid" mode: ``len(values) - width + 1``
    points). Chapters 2 and 3."""
    values = np.asarray(values, dtype=float)
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if values.size < width:
        raise ValueError(f"cannot smooth {values.size} points over a window of {width}")
    return np.convolve(values, np.ones(width) / width, mode="valid")


def smoothed_curve(ax, x, values, width: int = 5, **kwargs):
    """Plot a moving average of ``values`` against ``x``, each point at the window's
    last ``x``.

    Used for training curves (mean return per epoch or iteration) in chapters 2 and 3.
    """
    x = np.asarray(x)
    if len(x) != len(values):
        raise ValueError(f"{len(x)} x values but {len(values)} values")
    (line,) = ax.plot(x[width - 1 :], smooth(values, width), **kwargs)
    return line


def glue_figure(name: str, figure, show: bool = False) -> None:
    """Glue ``figure`` under ``name`` for a ``{glue:figure}`` directive, then close it.

    The chapters draw a figure in a visible cell tagged ``remove-output`` (so a reader
    in Jupyter or Colab sees it under that cell, and the book does not show it twice),
    then call this in a ``remove-cell`` cell: the page shows the figure once, with its
    caption, where the ``{glue:figure}`` stands. With ``show=True`` the figure is also
    this cell's output. Closing a matplotlib figure stops the inline backend from
    drawing it again. Without myst-nb (in Colab) nothing is glued; ``show=True`` then
    only displays it. Used from chapter 0 on.

    A matplotlib figure is first held to the book's figure style
    (:func:`~ssm_metarl.report.figure_style.figure_problems`): a ``ValueError`` names
    every problem, so a figure that breaks the style fails the build. The book gets it
    as a PNG drawn at twice :data:`~ssm_metarl.report.figure_style.DPI` and shown at
    half its pixel width: sharp on high-density screens, true to size everywhere.
    """
    from .display import _myst_nb_glue

    is_matplotlib = isinstance(figure, mpl.figure.Figure)
    if is_matplotlib:
        problems = figure_problems(figure)
        if problems:
            import matplotlib.pyplot as plt

            plt.close(figure)
            raise ValueError(
                f"figure {name!r} breaks the book's figure style:\n- "
                + "\n- ".join(problems)
            )
    glue = _myst_nb_glue()
    if glue is not None:
        glue(name, _retina_png(figure) if is_matplotlib else figure, display=show)
    elif show:  # no myst-nb (Colab): just show it
        from IPython.display import display

        display(figure)
    if is_matplotlib:
        import matplotlib.pyplot as plt

        plt.close(figure)


def _retina_png(figure):
    """``figure`` as an IPython PNG image at 2x density, displayed at 1x width."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=2 * DPI, bbox_inches="tight")
    data = buffer.getvalue()
    pixels_wide = int.from_bytes(data[16:20], "big")  # the PNG header's width field
    return Image(data=data, format="png", width=pixels_wide // 2)
