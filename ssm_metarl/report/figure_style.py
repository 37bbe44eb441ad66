"""The book's figure style, checked: what :func:`figure_problems` refuses.

The book shows a figure as a 2x PNG at 96 dots per inch, so one inch of figure is one
CSS inch on the page and a 10-point label reads as 10 points. That holds only while the
figure fits the text column unscaled (8 inches at a 1400-pixel window); a wider
figure is shrunk, and its text with it. So every figure glued into the book (chapters
0-7) must

- be at most :data:`MAX_WIDTH_INCHES` wide;
- set no text smaller than :data:`MIN_FONT_POINTS`;
- keep its legends off the data (lines, markers, error bars, bands and bars);
- label every axis that shows tick labels with words ("environment steps", not "t").

:func:`ssm_metarl.report.plotting.glue_figure` raises on any problem, so a figure that
breaks the style fails the book's build.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["DPI", "MAX_WIDTH_INCHES", "MIN_FONT_POINTS", "figure_problems"]

#: CSS pixels per inch: the book's figures are drawn at this density (2x for the PNG).
DPI = 96
#: The text column at a 1400-pixel window is 768 pixels, 8 inches; the saved PNG adds
#: a 0.1-inch margin on each side, so a figure may be 7.8 inches wide.
MAX_WIDTH_INCHES = 7.8
MIN_FONT_POINTS = 10.0
_WORD = re.compile(r"[A-Za-z]{3,}")
_STEP_PIXELS = 3.0  # how finely a line's segments are sampled for the legend test


def _texts(figure) -> list:
    from matplotlib.text import Text

    found = figure.findobj(
        lambda artist: (
            isinstance(artist, Text)
            and artist.get_visible()
            and artist.get_text().strip() != ""
        )
    )
    return list(dict.fromkeys(found))


def _small_text(figure) -> list[str]:
    problems = []
    for text in _texts(figure):
        size = text.get_fontsize()
        if size < MIN_FONT_POINTS - 1e-9:
            problems.append(
                f"text {text.get_text()[:30]!r} is {size:g} pt"
                f" (< {MIN_FONT_POINTS:g} pt)"
            )
    return problems


def _dense(points: np.ndarray) -> np.ndarray:
    """A polyline's points, with extra points every few pixels along each segment."""
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 2:
        return points
    pieces = [points[:1]]
    for start, end in zip(points[:-1], points[1:]):
        steps = int(np.ceil(np.hypot(*(end - start)) / _STEP_PIXELS))
        t = np.linspace(0.0, 1.0, max(steps, 1) + 1)[1:, None]
        pieces.append(start + t * (end - start))
    return np.concatenate(pieces)


def _data_points(ax) -> list[np.ndarray]:
    """Display coordinates of what the axes plots: lines, markers, segments, bars."""
    from matplotlib.collections import LineCollection, PathCollection

    clouds = []
    for line in ax.get_lines():
        if line.get_visible() and len(line.get_xydata()):
            shown = line.get_transform().transform(line.get_xydata())
            dense = line.get_linestyle() not in ("None", "none", "", " ")
            clouds.append(_dense(shown) if dense else shown)
    for collection in ax.collections:
        if not collection.get_visible():
            continue
        if isinstance(collection, PathCollection) and len(collection.get_offsets()):
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            clouds.append(collection.get_offset_transform().transform(offsets))
        elif isinstance(collection, LineCollection):
            transform = collection.get_transform()
            for path in collection.get_paths():
                if len(path.vertices):
                    clouds.append(_dense(transform.transform(path.vertices)))
    return clouds


def _covered_areas(ax, box) -> int:
    """How many bands (``fill_between``, ``axhspan``) and bars lie under ``box``."""
    from matplotlib.collections import PolyCollection

    probes = np.array(
        [(x, y) for x in np.linspace(box.x0, box.x1, 5) for y in (box.y0, box.y1)]
        + [((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)]
    )
    covered = 0
    for collection in ax.collections:
        if isinstance(collection, PolyCollection) and collection.get_visible():
            transform = collection.get_transform()
            for path in collection.get_paths():
                shown = path.transformed(transform)
                covered += bool(shown.contains_points(probes).any())
    for patch in ax.patches:
        if patch.get_visible() and patch.get_window_extent().overlaps(box):
            covered += 1
    return covered


def _count_inside(box, points: np.ndarray) -> int:
    x, y = points[:, 0], points[:, 1]
    return int(np.sum((x > box.x0) & (x < box.x1) & (y > box.y0) & (y < box.y1)))


def _covered_data(figure) -> list[str]:
    renderer = figure.canvas.get_renderer()
    problems = []
    legends = [(ax, ax.get_legend()) for ax in figure.axes] + [
        (None, legend) for legend in figure.legends
    ]
    for owner, legend in legends:
        if legend is None or not legend.get_visible():
            continue
        # a hair smaller, about its centre: a legend may touch a line at its edge
        box = legend.get_window_extent(renderer).expanded(0.96, 0.9)
        for ax in figure.axes if owner is None else [owner]:
            inside = sum(
                _count_inside(box, cloud) for cloud in _data_points(ax) if len(cloud)
            )
            areas = _covered_areas(ax, box)
            if inside or areas:
                where = ax.get_title() or ax.get_ylabel() or "an axes"
                problems.append(
                    f"a legend covers {inside} plotted point(s) and {areas} band(s) or"
                    f" bar(s) of {where[:30]!r}"
                )
    return problems


def _has_tick_labels(axis) -> bool:
    return axis.get_visible() and any(
        label.get_visible() and label.get_text().strip()
        for label in axis.get_ticklabels()
    )


def _unlabelled_axes(figure) -> list[str]:
    fig_labels = {
        "x": getattr(figure, "_supxlabel", None),
        "y": getattr(figure, "_supylabel", None),
    }
    problems = []
    for ax in figure.axes:
        if not ax.axison or not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        for name, axis, shared in (
            ("x", ax.xaxis, ax.get_shared_x_axes()),
            ("y", ax.yaxis, ax.get_shared_y_axes()),
        ):
            if not _has_tick_labels(axis):
                continue
            siblings = shared.get_siblings(ax)
            labels = [s.xaxis if name == "x" else s.yaxis for s in siblings]
            texts = [a.get_label_text() for a in labels]
            if fig_labels[name] is not None:
                texts.append(fig_labels[name].get_text())
            if not any(_WORD.search(text) for text in texts):
                where = ax.get_title() or "an axes"
                problems.append(
                    f"the {name} axis of {where[:30]!r} has no label in words"
                )
    return problems


def figure_problems(figure) -> list[str]:
    """Every way ``figure`` breaks the book's figure style, one sentence each.

    An empty list means the figure may be glued into a chapter; every figure from
    chapter 0 on passes through it.
    """
    if not hasattr(figure.canvas, "get_renderer"):
        # Jupyter's inline backend leaves a figure drawn in an earlier cell with a bare
        # canvas; an Agg one can lay it out again.
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(figure)
    figure.canvas.draw()  # lays out text and legends, so their extents are final
    width = figure.get_size_inches()[0]
    problems = []
    if width > MAX_WIDTH_INCHES + 1e-9:
        problems.append(
            f"the figure is {width:g} in wide (> {MAX_WIDTH_INCHES:g} in): the page "
            "would shrink it and its text"
        )
    return (
        problems
        + _small_text(figure)
        + _covered_data(figure)
        + _unlabelled_axes(figure)
    )
