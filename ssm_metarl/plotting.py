"""The book's figures: one style, CI plots, learning curves, and the CartPole animation.

Used by every chapter from chapter 0 (``00_quick_tour``) on:

- :func:`use_book_style` and :data:`COLORS`: one look and one colour per role everywhere;
- :func:`errorbar_ci` and :func:`band_ci`: means with their 95% confidence intervals
  (adaptation curves, chapter 3's sine and hidden-goal figures);
- :func:`smooth` and :func:`smoothed_curve`: noisy training curves (chapters 2 and 3);
- :func:`glue_figure`: glue a figure for a ``{glue:figure}`` and close it, so no chapter
  cell ends with ``plt.close(fig)``;
- :func:`record_episode` and :func:`animation_html`: one real Gymnasium episode as a
  readable animation (chapter 2, ``02_cartpole_tasks``).

``IPython``, ``myst_nb`` and ``PIL`` are imported only when a helper that needs them runs.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl
import numpy as np

__all__ = [
    "COLORS", "use_book_style", "errorbar_ci", "band_ci", "smooth", "smoothed_curve", "glue_figure",
    "Episode", "record_episode", "animation_html",
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


def _bounds(estimates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, lows and highs of a sequence of :class:`~ssm_metarl.stats.Estimate`."""
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
    """Plot means with asymmetric 95% CI error bars (one marker per ``x``); return the container.

    ``estimates`` is a sequence of :class:`~ssm_metarl.stats.Estimate`, one per ``x``.
    Keyword arguments go to ``ax.errorbar`` (defaults: round markers, capped bars).
    Used for returns after 0, 1, 3, 5 adaptation steps and MSE after 0, 1, 10 steps (chapter 3).
    """
    mean, low, high = _bounds(estimates)
    if len(x) != len(mean):
        raise ValueError(f"{len(x)} x values but {len(mean)} estimates")
    kwargs = {"marker": "o", "capsize": 3, **kwargs}
    return ax.errorbar(np.asarray(x), mean, yerr=np.vstack([mean - low, high - mean]), **kwargs)


def band_ci(ax, x, estimates, alpha: float = 0.2, **kwargs):
    """Plot the mean as a line and its 95% CI as a shaded band; return the line.

    For curves with many points (returns over training, over adaptation episodes).
    Keyword arguments go to ``ax.plot``; the band takes the line's colour.
    """
    mean, low, high = _bounds(estimates)
    if len(x) != len(mean):
        raise ValueError(f"{len(x)} x values but {len(mean)} estimates")
    (line,) = ax.plot(np.asarray(x), mean, **kwargs)
    ax.fill_between(np.asarray(x), low, high, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def smooth(values, width: int = 5) -> np.ndarray:
    """Moving average over ``width`` points ("valid" mode: ``len(values) - width + 1`` points)."""
    values = np.asarray(values, dtype=float)
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if values.size < width:
        raise ValueError(f"cannot smooth {values.size} points over a window of {width}")
    return np.convolve(values, np.ones(width) / width, mode="valid")


def smoothed_curve(ax, x, values, width: int = 5, **kwargs):
    """Plot a moving average of ``values`` against ``x``, each point at the window's last ``x``.

    Used for training curves (mean return per epoch or iteration) in chapters 2 and 3.
    """
    x = np.asarray(x)
    if len(x) != len(values):
        raise ValueError(f"{len(x)} x values but {len(values)} values")
    (line,) = ax.plot(x[width - 1:], smooth(values, width), **kwargs)
    return line


def glue_figure(name: str, figure, show: bool = False) -> None:
    """Glue ``figure`` under ``name`` for a ``{glue:figure}`` directive, then close it.

    The chapters draw a figure in a visible cell tagged ``remove-output`` (so a reader in
    Jupyter or Colab sees it under that cell, and the book does not show it twice), then
    call this in a ``remove-cell`` cell: the page shows the figure once, with its caption,
    where the ``{glue:figure}`` stands. With ``show=True`` the figure is also this cell's
    output. Closing a matplotlib figure stops the inline backend from drawing it again.
    Without myst-nb (in Colab) nothing is glued; ``show=True`` then only displays it.
    """
    from .display import _myst_nb_glue

    glue = _myst_nb_glue()
    if glue is not None:
        glue(name, figure, display=show)
    elif show:  # no myst-nb (Colab): just show it
        from IPython.display import display

        display(figure)
    if isinstance(figure, mpl.figure.Figure):
        import matplotlib.pyplot as plt

        plt.close(figure)


@dataclass
class Episode:
    """A recorded episode: the kept frames (RGB arrays), its return and its length."""

    frames: list = field(repr=False)
    total: float
    steps: int


def record_episode(policy, task=None, seed: int = 0, every: int = 1, max_frames: int = 100,
                   band: tuple[int, int] = (120, 340)) -> Episode:
    """Play one greedy episode of `policy` on `task` in a real Gymnasium environment, keeping
    every `every`-th frame.

    `policy` is anything `ssm_metarl.collect` accepts (a `StateSpaceModel`, a `Policy`); it
    acts greedily and gets its previous action and reward as in `collect`. A plain function
    `act(observation) -> action` works too. Frames are Gymnasium's own `rgb_array` render
    (600 px wide), cropped to the rows `band` that hold the cart and pole, and labelled with
    the step. At most `max_frames` are kept (plus the final state); the episode plays to its
    end. Shown in chapter 2 (`02_cartpole_tasks`).
    """
    import torch

    from .policy import as_policy, select_actions
    from .envs import make_env
    from .tasks import CartPoleTask

    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be positive, got {every} and {max_frames}")
    if hasattr(policy, "step") or hasattr(policy, "init_hidden"):
        policy = as_policy(policy)
        state, prev_action, prev_reward = policy.initial_state(1), torch.full((1,), -1), torch.zeros(1)

        @torch.no_grad()
        def act(obs):
            nonlocal state, prev_action
            obs = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            outputs, state = policy.step(obs, prev_action, prev_reward, state)
            prev_action = select_actions(outputs, greedy=True)
            return int(prev_action[0])
    else:
        act = policy
    env = make_env(CartPoleTask() if task is None else task, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames, total, t, done = [], 0.0, 0, False
        while not done:
            if t % every == 0 and len(frames) < max_frames:
                frames.append(_label(env.render()[band[0]:band[1]], f"step {t}"))
            obs, reward, terminated, truncated, _ = env.step(int(act(obs)))
            if act is not policy:
                prev_reward = torch.tensor([float(reward)])
            total, t, done = total + float(reward), t + 1, terminated or truncated
        if len(frames) <= max_frames:  # the final state: the fallen pole, or the last step
            frames.append(_label(env.render()[band[0]:band[1]], f"step {t} (end)"))
    finally:
        env.close()
    return Episode(frames, total, t)


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the frame's top-left corner, large enough to read."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(frame))
    try:
        font = ImageFont.load_default(size=22)
    except TypeError:  # Pillow < 10.1 has one small bitmap font
        font = ImageFont.load_default()
    ImageDraw.Draw(image).text((10, 8), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def _gif(frames: Sequence[np.ndarray], duration_ms: int) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=32) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def animation_html(episodes: Sequence[Episode], labels: Sequence[str], duration_ms: int = 80,
                   width: int = 600):
    """Animated GIFs of ``episodes``, each under its label, as one ``IPython.display.HTML``.

    Each animation is shown ``width`` px wide (600 is the render's own width) and shrinks
    to the page on a narrow screen. Glue it and paste it with ``{glue:figure}``.
    """
    from IPython.display import HTML

    if len(episodes) != len(labels) or not episodes:
        raise ValueError(f"need one label per episode, got {len(episodes)} episodes and {len(labels)} labels")
    parts = []
    for episode, label in zip(episodes, labels):
        if not episode.frames:
            raise ValueError(f"episode {label!r} has no frames")
        data = base64.b64encode(_gif(episode.frames, duration_ms)).decode()
        parts.append(
            f'<figure class="cartpole-animation" style="margin:0 0 1em 0;max-width:{width}px">'
            f'<img src="data:image/gif;base64,{data}" alt="{html.escape(label)}" style="width:100%;height:auto"/>'
            f'<figcaption style="text-align:center">{html.escape(label)}</figcaption></figure>'
        )
    return HTML("<div>" + "".join(parts) + "</div>")
