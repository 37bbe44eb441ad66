"""One real Gymnasium episode of CartPole, recorded and shown as a readable animation.

:func:`record_episode` plays a policy greedily in Gymnasium's own environment and keeps
its frames; :func:`animation_html` turns episodes into labelled GIFs for a page.
Shown in chapter 2 (``02_cartpole_tasks``) and chapter 4. ``PIL`` and ``IPython`` are
imported only when a helper runs.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.policy import as_policy, select_actions
from .envs import make_env
from .tasks import CartPoleTask

__all__ = ["Episode", "record_episode", "animation_html"]


@dataclass
class Episode:
    """A recorded episode: the kept frames (RGB arrays), its return and its length.

    Chapter 2 shows one."""

    frames: list = field(repr=False)
    total: float
    steps: int


def record_episode(
    policy,
    task=None,
    seed: int = 0,
    every: int = 1,
    max_frames: int = 100,
    band: tuple[int, int] = (120, 340),
    goal: float | None = None,
) -> Episode:
    """Play one greedy episode of `policy` on `task` in a real Gymnasium environment,
    keeping every `every`-th frame.

    `policy` is anything `ssm_metarl.collect` accepts (a `StateSpaceModel`, a `Policy`);
    it acts greedily and gets its previous action and reward as in `collect`. A plain
    function `act(observation) -> action` works too. Frames are Gymnasium's own
    `rgb_array` render (600 px wide), cropped to the rows `band` that hold the cart and
    pole, and labelled with the step, with a scale of the track in metres. A goal
    (`goal`, or the task's own when it has one) is drawn as a red line. At most
    `max_frames` are kept (plus the final state); the episode plays to its end. Shown
    in chapter 2 (`02_cartpole_tasks`).
    """
    if every < 1 or max_frames < 1:
        raise ValueError(
            f"every and max_frames must be positive, got {every} and {max_frames}"
        )
    if hasattr(policy, "step") or hasattr(policy, "init_hidden"):
        policy = as_policy(policy)
        state, prev_action, prev_reward = (
            policy.initial_state(1),
            torch.full((1,), -1),
            torch.zeros(1),
        )

        @torch.no_grad()
        def act(obs):
            nonlocal state, prev_action
            obs = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            outputs, state = policy.step(obs, prev_action, prev_reward, state)
            prev_action = select_actions(outputs, greedy=True)
            return int(prev_action[0])
    else:
        act = policy
    task = CartPoleTask() if task is None else task
    goal = getattr(task, "goal", None) if goal is None else goal
    env = make_env(task, render_mode="rgb_array")

    def frame(text: str) -> np.ndarray:
        return _label(_track(env.render(), goal)[band[0] : band[1]], text)

    try:
        obs, _ = env.reset(seed=seed)
        frames, total, t, done = [], 0.0, 0, False
        while not done:
            if t % every == 0 and len(frames) < max_frames:
                frames.append(frame(f"step {t}"))
            obs, reward, terminated, truncated, _ = env.step(int(act(obs)))
            if act is not policy:
                prev_reward = torch.tensor([float(reward)])
            total, t, done = total + float(reward), t + 1, terminated or truncated
        # the final state: the fallen pole, or the last step
        if len(frames) <= max_frames:
            frames.append(frame(f"step {t} (end)"))
    finally:
        env.close()
    return Episode(frames, total, t)


#: Gymnasium's CartPole render: 600 px for the 4.8 m track, x = 0 at the centre, the
#: track's line 100 px above the bottom of the 400 px image.
PIXELS_PER_METRE, CENTRE, TRACK_ROW = 600 / 4.8, 300, 300


def _track(frame: np.ndarray, goal: float | None) -> np.ndarray:
    """Ticks every metre under the track, labelled, and the goal as a red line."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for metre in range(-2, 3):
        x = CENTRE + metre * PIXELS_PER_METRE
        draw.line([(x, TRACK_ROW), (x, TRACK_ROW + 10)], fill=(0, 0, 0), width=2)
        draw.text((x - 12, TRACK_ROW + 12), f"{metre:+d} m", fill=(0, 0, 0), font=font)
    if goal is not None and goal != 0:
        x = CENTRE + goal * PIXELS_PER_METRE
        draw.line(
            [(x, TRACK_ROW - 170), (x, TRACK_ROW + 8)], fill=(213, 94, 0), width=3
        )
        draw.text((x + 5, TRACK_ROW - 170), "goal", fill=(213, 94, 0), font=font)
    return np.asarray(image)


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

    images = [
        Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        for f in frames
    ]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
    )
    return buffer.getvalue()


def animation_html(
    episodes: Sequence[Episode],
    labels: Sequence[str],
    duration_ms: int = 80,
    width: int = 600,
):
    """Animated GIFs of ``episodes``, each under its label, as one
    ``IPython.display.HTML``.

    Each animation is shown ``width`` px wide (600 is the render's own width) and
    shrinks to the page on a narrow screen. Glue it and paste it with ``{glue:figure}``.
    Chapters 2 and 4.
    """
    from IPython.display import HTML

    if len(episodes) != len(labels) or not episodes:
        raise ValueError(
            f"need one label per episode, got {len(episodes)} episodes and "
            f"{len(labels)} labels"
        )
    parts = []
    for episode, label in zip(episodes, labels):
        if not episode.frames:
            raise ValueError(f"episode {label!r} has no frames")
        data = base64.b64encode(_gif(episode.frames, duration_ms)).decode()
        parts.append(
            '<figure class="cartpole-animation" style="margin:0 0 1em '
            f'0;max-width:{width}px">'
            f'<img src="data:image/gif;base64,{data}" alt="{html.escape(label)}" '
            'style="width:100%;height:auto"/>'
            "<figcaption "
            f'style="text-align:center">{html.escape(label)}</figcaption></figure>'
        )
    return HTML("<div>" + "".join(parts) + "</div>")
