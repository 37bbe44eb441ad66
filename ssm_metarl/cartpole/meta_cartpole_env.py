"""Meta-CartPole as a Gymnasium environment: one meta-episode per Gymnasium episode.

Libraries such as Stable-Baselines3 expect `gym.Env`; the book's own training loops
step `MetaCartPoleBatch` directly. The environment is a `MetaCartPoleBatch` of one
member without autoreset, so both play the same meta-episodes step for step:
`reset(seed=s)` plays member `member`'s meta-episode 0 under seed s (drawn from
`np.random.default_rng([s, member, 0])`), each later `reset()` its next one.
Taught in chapter 7 ("which memory?").
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from ..io.validation import check_int
from .meta_cartpole import OBS_DIM, MetaCartPoleBatch, MetaCartPoleConfig

__all__ = ["MetaCartPoleEnv", "make_meta_env", "META_ENV_ID"]

#: The Gymnasium id under which `MetaCartPoleEnv` is registered (chapter 7).
META_ENV_ID = "ssm_metarl/MetaCartPole-v0"


class MetaCartPoleEnv(gym.Env):
    """Lu et al.'s meta-CartPole, one meta-episode (16 trials) per episode.

    Observation Box(7,) float32: 4 projected values of [x, theta], the previous
    action, trial_ended and first_step (see `MetaCartPoleBatch`). Action
    Discrete(2). Reward ``1 / trial_steps`` per step. ``terminated`` is True when the
    last trial ends; ``truncated`` is always False (the trials bound the length).
    ``info`` holds ``trial_done``, ``trials_completed`` and, at the end,
    ``trial_returns`` (the return of each trial). ``member`` picks which member of a
    seeded batch this environment replays. Defined in chapter 7.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: MetaCartPoleConfig | None = None,
        member: int = 0,
        render_mode: str | None = None,
    ):
        if render_mode is not None:
            raise ValueError(
                f"render_mode={render_mode!r}: MetaCartPoleEnv cannot render; pass None"
            )
        self.batch = MetaCartPoleBatch(config, 1, autoreset=False)
        self.config = self.batch.config
        self.member = check_int("member", member, minimum=0)
        bound = self.config.obs_bound
        # projected values within +-bound; previous action and the two flags in {0, 1}
        high = np.array([bound] * 4 + [1.0] * 3, np.float32)
        low = np.array([-bound] * 4 + [0.0] * 3, np.float32)
        self.observation_space = gym.spaces.Box(low, high, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and self.batch.seed is None:
            # Gymnasium's rule: unseeded, draw from its own entropy-seeded generator
            seed = int(self.np_random.integers(2**62))
        if seed is None:
            obs = self.batch.reset()
        else:
            obs = self.batch.reset(seed, first_member=self.member)
        return obs[0], {"trial_done": False, "trials_completed": 0}

    def step(self, action):
        obs, reward, trial_done, meta_done = self.batch.step(
            np.array([int(action)], np.int64)
        )
        info = {
            "trial_done": bool(trial_done[0]),
            "trials_completed": int(self.batch.trial[0]),
        }
        if meta_done[0]:
            info["trial_returns"] = self.batch.trial_returns[0].copy()
        return obs[0], float(reward[0]), bool(meta_done[0]), False, info


def _register() -> None:
    if META_ENV_ID not in gym.registry:
        gym.register(id=META_ENV_ID, entry_point=MetaCartPoleEnv)


def make_meta_env(
    config: MetaCartPoleConfig | None = None, member: int = 0, **overrides
) -> gym.Env:
    """``gym.make("ssm_metarl/MetaCartPole-v0", ...)`` for ``config`` with any
    config fields in ``overrides`` replaced, e.g. ``make_meta_env(projection="none")``.
    Defined in chapter 7 ("which memory?").
    """
    config = MetaCartPoleConfig() if config is None else config
    if not isinstance(config, MetaCartPoleConfig):
        raise ValueError(
            f"config must be a MetaCartPoleConfig, got {type(config).__name__}"
        )
    names = {f.name for f in dataclasses.fields(MetaCartPoleConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown MetaCartPoleConfig field(s) {unknown}; valid: {sorted(names)}"
        )
    _register()
    return gym.make(
        META_ENV_ID, config=dataclasses.replace(config, **overrides), member=member
    )
