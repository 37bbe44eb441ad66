"""ssm_metarl.report.plotting: CI plots, curves, glued figures and the episode animation."""
from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ssm_metarl.report import plotting
from ssm_metarl.cartpole.animation import Episode, animation_html, record_episode
from ssm_metarl.report.plotting import band_ci, errorbar_ci, glue_figure, smooth, smoothed_curve
from ssm_metarl.report.stats import Estimate

ESTIMATES = [Estimate(10.0, 8.0, 13.0, 20), Estimate(20.0, 19.0, 22.0, 20)]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_errorbar_ci_draws_asymmetric_intervals(ax):
    container = errorbar_ci(ax, [0, 1], ESTIMATES, color="red", label="x")
    line, _, (bars,) = container
    np.testing.assert_allclose(line.get_ydata(), [10.0, 20.0])
    segments = [np.asarray(s)[:, 1] for s in bars.get_segments()]
    np.testing.assert_allclose(segments, [[8.0, 13.0], [19.0, 22.0]])


def test_band_ci_shades_from_low_to_high(ax):
    line = band_ci(ax, [0, 1], ESTIMATES, color="blue")
    np.testing.assert_allclose(line.get_ydata(), [10.0, 20.0])
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(8.0) and ys.max() == pytest.approx(22.0)


def test_ci_plots_check_their_input(ax):
    with pytest.raises(ValueError, match="2 x values but 1 estimates"):
        errorbar_ci(ax, [0, 1], ESTIMATES[:1])
    with pytest.raises(ValueError, match="low <= mean <= high"):
        band_ci(ax, [0], [Estimate(5.0, 6.0, 7.0, 3)])
    with pytest.raises(ValueError, match="at least one"):
        errorbar_ci(ax, [], [])


def test_smooth_is_a_moving_average():
    np.testing.assert_allclose(smooth([0, 3, 6, 9], width=2), [1.5, 4.5, 7.5])
    np.testing.assert_allclose(smooth([1, 2], width=1), [1, 2])
    with pytest.raises(ValueError):
        smooth([1, 2], width=3)
    with pytest.raises(ValueError):
        smooth([1, 2], width=0)


def test_smoothed_curve_puts_each_point_at_the_window_end(ax):
    line = smoothed_curve(ax, [10, 20, 30, 40], [0, 3, 6, 9], width=3)
    np.testing.assert_allclose(line.get_xdata(), [30, 40])
    np.testing.assert_allclose(line.get_ydata(), [3, 6])


@pytest.mark.parametrize("show", [True, False])
def test_glue_figure_glues_and_closes(monkeypatch, show):
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel="episode", ylabel="return")
    glue_figure("fig_x", fig, show=show)
    [(name, image, display)] = calls
    assert (name, display) == ("fig_x", show)
    assert not plt.fignum_exists(fig.number), "the figure must be closed"
    # a 2x PNG, shown at half its pixel width: 5 in at the book's 96 dpi, give or take the
    # tight bounding box
    png = Image.open(io.BytesIO(image.data))
    assert image.width == png.size[0] // 2 and 5 * 96 - 80 < image.width <= 5 * 96


def _good_figure():
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="rising")
    ax.fill_between(x, x - 0.1, x + 0.1, alpha=0.2)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set(xlabel="environment steps", ylabel="return")
    return fig, ax


def test_a_figure_in_the_book_style_has_no_problems():
    fig, _ = _good_figure()
    assert plotting.figure_problems(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("breakage, expected", [
    (lambda fig, ax: fig.set_size_inches(10, 3), "10 in wide"),
    (lambda fig, ax: ax.legend(fontsize=8), "'rising' is 8 pt"),
    (lambda fig, ax: ax.tick_params(labelsize=7), "pt (< 10 pt)"),
    (lambda fig, ax: ax.legend(loc="center"), "a legend covers"),
    (lambda fig, ax: (ax.axhspan(0.9, 1.1), ax.legend(loc="upper left")), "1 band(s)"),
    (lambda fig, ax: ax.set_xlabel("t"), "the x axis of 'an axes' has no label in words"),
    (lambda fig, ax: ax.set_ylabel(""), "the y axis"),
])
def test_figure_problems_names_each_break_of_the_style(breakage, expected):
    fig, ax = _good_figure()
    breakage(fig, ax)
    problems = plotting.figure_problems(fig)
    assert any(expected in p for p in problems), problems
    plt.close(fig)


def test_glue_figure_refuses_a_figure_that_breaks_the_style(monkeypatch):
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: pytest.fail("must not glue"))
    fig, ax = _good_figure()
    ax.legend(loc="center", fontsize=7)
    with pytest.raises(ValueError, match="fig_bad.*breaks the book's figure style"):
        glue_figure("fig_bad", fig)
    assert not plt.fignum_exists(fig.number)


def test_shared_axes_may_share_one_label():
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(7, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("episode")
    axes[0].set_ylabel("return")
    assert plotting.figure_problems(fig) == []
    plt.close(fig)


def test_record_episode_plays_to_the_end_and_keeps_labelled_wide_frames():
    episode = record_episode(lambda obs: 0, seed=3, every=2, max_frames=100)
    assert 5 < episode.steps < 30 and episode.total == episode.steps  # always left: the pole falls soon
    assert len(episode.frames) == (episode.steps - 1) // 2 + 2  # every other step, plus the final state
    height, width, _ = episode.frames[0].shape
    assert width >= 480 and height >= 150
    assert not np.array_equal(episode.frames[0], episode.frames[-1])


def test_record_episode_caps_frames_but_not_the_episode():
    episode = record_episode(lambda obs: int(obs[2] + 0.5 * obs[3] > 0), seed=0, every=5, max_frames=4)
    assert episode.steps == 500 and len(episode.frames) == 4 + 1  # and the final state


def test_record_episode_plays_a_policy_greedily_like_evaluate():
    from ssm_metarl import CartPoleTask, LinearPolicy, StateSpaceModel, evaluate

    rule = LinearPolicy([0.0, 0.0, 1.0, 0.5])
    assert record_episode(rule, seed=0, max_frames=1).total == 500
    torch.manual_seed(0)
    model = StateSpaceModel()
    episode = record_episode(model, seed=5, max_frames=1)
    same = evaluate(model, [CartPoleTask()], 1, seed=5, greedy=True, backend="gymnasium")
    assert episode.total == same.returns[0]


def test_animation_html_embeds_one_readable_gif_per_episode():
    frames = [np.full((220, 600, 3), 255, np.uint8), np.zeros((220, 600, 3), np.uint8)]
    page = animation_html([Episode(frames, 1.0, 1), Episode(frames[:1], 2.0, 1)], ["before <untrained>", "after"])
    html = page.data
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', html)
    assert len(gifs) == 2
    first = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert first.size == (600, 220) and first.n_frames == 2
    assert "before &lt;untrained&gt;" in html and "max-width:600px" in html
    with pytest.raises(ValueError, match="one label per episode"):
        animation_html([Episode(frames, 1.0, 1)], [])


def test_colours_are_distinct():
    assert len(set(plotting.COLORS.values())) == len(plotting.COLORS)


def test_glue_figure_without_myst_nb_displays_and_closes(monkeypatch):
    import sys

    import IPython.display

    shown = []
    monkeypatch.setitem(sys.modules, "myst_nb", None)
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    fig, _ = _good_figure()
    glue_figure("fig_x", fig)
    assert shown == [] and not plt.fignum_exists(fig.number)
    fig, _ = _good_figure()
    glue_figure("fig_x", fig, show=True)
    assert shown == [fig] and not plt.fignum_exists(fig.number)


def test_record_episode_draws_the_track_in_metres_and_the_goal():
    from ssm_metarl.cartpole.animation import CENTRE, PIXELS_PER_METRE, TRACK_ROW, _track
    from ssm_metarl.cartpole.tasks import CartPoleTask

    blank = np.full((400, 600, 3), 255, dtype=np.uint8)
    drawn = _track(blank, goal=1.0)
    assert tuple(drawn[TRACK_ROW + 5, CENTRE]) == (0, 0, 0)  # the tick at 0 m
    goal_x = int(CENTRE + PIXELS_PER_METRE)
    assert tuple(drawn[TRACK_ROW - 60, goal_x]) == (213, 94, 0)  # the goal line at +1 m
    assert (_track(blank, goal=None)[TRACK_ROW - 60] == 255).all()  # no goal, no line
    task = CartPoleTask(goal=-1.2)
    episode = record_episode(lambda obs: 0, task, seed=0, max_frames=2)
    column = int(CENTRE - 1.2 * PIXELS_PER_METRE)
    frame = episode.frames[0]  # cropped to rows 120-340: the line spans them
    assert (frame[:, column - 1 : column + 2] == (213, 94, 0)).all(axis=-1).any()
