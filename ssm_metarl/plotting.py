"""The book's figure style and small plotting helpers."""
from __future__ import annotations

import matplotlib as mpl

__all__ = ["use_book_style", "COLORS"]

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
    """Set matplotlib defaults for the book: readable sizes, light grid, no top/right spines."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 10,
        "legend.frameon": False,
    })
