"""Lu et al.'s meta-CartPole: one hidden task per meta-episode, many trials to solve it.

Lu et al. (2023, "Structured State Space Models for In-Context Reinforcement
Learning", code in popjaxrl) test memory with a task that cannot be solved without
it. The agent sees CartPole *without velocities*, [x, theta] only, and through a
random linear map to 4 numbers that is drawn anew for each meta-episode. A
meta-episode is 16 trials of at most 200 steps; every trial restarts from the same
initial state. A memoryless policy sees neither the velocities nor which map is in
force; a policy with memory can infer both, working the map out in the first trials
and scoring in the later ones.
Return per trial, with no gradient step, measures in-context learning.

`MetaCartPoleBatch` plays B meta-episodes at once in vectorised numpy;
`ssm_metarl.cartpole.meta_cartpole_env` wraps it as a Gymnasium environment, so the two
agree step for step by construction. Taught in chapter 7 ("which memory?").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..io.validation import (
    check_actions,
    check_bool,
    check_choice,
    check_int,
    check_positive,
)

__all__ = ["MetaCartPoleConfig", "MetaCartPoleBatch", "sample_projections", "OBS_DIM"]

#: Observation size: 4 projected values, previous action, trial-ended, first-step
#: (chapter 7).
OBS_DIM = 7
# Chapter 7's physics: Gymnasium's CartPole-v1 constants (popjaxrl's EnvParams are
# the same numbers); only the pole's half-length is a config field.
GRAVITY, MASSCART, MASSPOLE, FORCE_MAG, TAU = 9.8, 1.0, 0.1, 10.0, 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
#: The observed [x, theta] are clipped to twice the termination thresholds, as in
#: popjaxrl (chapter 7); a trial ends long before either clip is reached.
OBS_CLIP = np.array([2 * X_THRESHOLD, 2 * THETA_THRESHOLD])
INIT_RANGE = 0.05  # the initial state is uniform in [-0.05, 0.05]^4
# E|c| for c ~ N(0, I_4): scales Gaussian columns to an expected norm equal to gain.
_CHI4_MEAN = math.sqrt(2) * math.gamma(2.5) / math.gamma(2.0)


@dataclass(frozen=True)
class MetaCartPoleConfig:
    """The meta-CartPole task family of chapter 7; the defaults are Lu et al.'s task.

    - ``trials``: trials per meta-episode (16).
    - ``trial_steps``: a trial's step limit (200); each step earns
      ``1 / trial_steps``, so a full trial scores 1 and a perfect meta-episode 16.
    - ``projection``: ``"random"`` draws a new map per meta-episode (the task);
      ``"fixed"`` draws one map from ``fixed_seed`` and keeps it; ``"none"`` shows
      [x, theta, 0, 0] (plain stateless CartPole, the gain is ignored).
    - ``projection_gain``: the map's scale, sqrt(2) as in popjaxrl's orthogonal init.
    - ``fixed_seed``: the seed of the ``"fixed"`` map (0).

    Out-of-distribution options, for testing a trained policy only:

    - ``projection_kind``: ``"orthogonal"`` (orthonormal columns times the gain) or
      ``"gaussian"`` (i.i.d. normal entries scaled so that a column's expected norm
      is the gain).
    - ``flip_signs``: flip the sign of each projected coordinate at random, per
      meta-episode. A random orthogonal map is sign-flip invariant in distribution,
      so this is out of distribution only for ``"fixed"`` and ``"none"``.
    - ``length``: the pole's half-length (0.5 m, Gymnasium's default).
    """

    trials: int = 16
    trial_steps: int = 200
    projection: str = "random"
    projection_gain: float = math.sqrt(2)
    fixed_seed: int = 0
    projection_kind: str = "orthogonal"
    flip_signs: bool = False
    length: float = 0.5

    def __post_init__(self):
        check_int("trials", self.trials)
        check_int("trial_steps", self.trial_steps)
        check_choice("projection", self.projection, ("random", "fixed", "none"))
        check_positive("projection_gain", self.projection_gain)
        check_int("fixed_seed", self.fixed_seed, minimum=0)
        check_choice(
            "projection_kind", self.projection_kind, ("orthogonal", "gaussian")
        )
        check_bool("flip_signs", self.flip_signs)
        check_positive("length", self.length)

    @property
    def obs_bound(self) -> float:
        """The largest |value| a projected slot can take (inf for Gaussian maps), used
        by the Gymnasium observation space (chapter 7)."""
        if self.projection == "none":
            return float(OBS_CLIP[0])
        if self.projection_kind == "gaussian":
            return math.inf
        # |P v| <= gain |v|; the margin covers rounding to float32
        return self.projection_gain * float(np.linalg.norm(OBS_CLIP)) * (1 + 1e-5)

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (chapter 7)."""
        return asdict(self)


def sample_projections(config: MetaCartPoleConfig, normals: np.ndarray) -> np.ndarray:
    """Maps (n, 4, 2) from standard normals (n, 4, 2), as ``config`` asks (chapter 7).

    Orthogonal: the Q of a QR decomposition with the signs of R's diagonal moved into
    Q, which makes Q uniform over matrices with orthonormal columns (what Flax's
    ``orthogonal`` init, used by popjaxrl, draws), times the gain. A (4, 2) map with
    orthonormal columns is the transpose of Flax's (2, 4) kernel with orthonormal
    rows, so ``P @ [x, theta]`` equals popjaxrl's ``Dense`` output.
    """
    if config.projection_kind == "gaussian":
        return normals * (config.projection_gain / _CHI4_MEAN)
    q, r = np.linalg.qr(normals)
    signs = np.where(np.diagonal(r, axis1=1, axis2=2) < 0, -1.0, 1.0)
    return q * signs[:, None, :] * config.projection_gain


def _draw(config: MetaCartPoleConfig, seed: int, members, episodes):
    """Initial states (n, 4) and maps (n, 4, 2) of the given meta-episodes.

    Meta-episode k of member i under ``seed`` is drawn from
    ``np.random.default_rng([seed, i, k])``: 4 uniforms for the initial state, then 8
    normals for the map, then 4 signs. All are drawn in every mode, so the same seed
    gives the same initial states whatever the projection: comparisons are paired.
    """
    draws = []
    for i, k in zip(members, episodes):  # only members starting a meta-episode
        rng = np.random.default_rng([seed, int(i), int(k)])
        draws.append(
            np.concatenate(
                [
                    rng.uniform(-INIT_RANGE, INIT_RANGE, 4),
                    rng.standard_normal(8),
                    rng.integers(0, 2, 4) * 2.0 - 1.0,
                ]
            )
        )
    d = np.stack(draws)
    n = len(d)
    if config.projection == "random":
        proj = sample_projections(config, d[:, 4:12].reshape(n, 4, 2))
    elif config.projection == "fixed":
        fixed = np.random.default_rng(config.fixed_seed).standard_normal((1, 4, 2))
        proj = np.repeat(sample_projections(config, fixed), n, axis=0)
    else:
        proj = np.repeat(np.eye(4, 2)[None], n, axis=0)
    if config.flip_signs:
        proj = proj * d[:, 12:16, None]
    return d[:, :4], proj


class MetaCartPoleBatch:
    """B meta-CartPole meta-episodes stepped at once, in vectorised numpy (chapter 7).

    ``reset(seed)`` starts meta-episode 0 of members ``first_member + 0 .. B-1``
    (member i, meta-episode k is drawn from ``default_rng([seed, i, k])``);
    ``reset()`` without a seed starts each member's next meta-episode.
    ``step(actions)`` returns ``obs (B, 7) float32, reward (B,) float32,
    trial_done (B,) bool, meta_done (B,) bool``.

    The observation is ``[P @ clip(x, theta) (4 values), previous action,
    trial_ended, first_step]`` as in popjaxrl: after a reset the previous action and
    trial_ended are 0 and first_step is 1; after a step the previous action is the
    action just taken, first_step is 0, and on the step that ends a trial
    trial_ended is 1 and the 4 values already show the restart state (the failed
    state is never seen). Physics runs in float64, as in Gymnasium.

    When a meta-episode ends (its last trial ends), with ``autoreset=True`` (for
    training) that member starts its next meta-episode at once: the returned
    observation is the new one's first (first_step = 1), ``final_obs`` keeps the
    finished one's last, and ``meta_done`` is True on that step only. With
    ``autoreset=False`` (for evaluation, and for the Gymnasium env) the member stays
    done until ``reset``: observations 0, rewards 0, ``trial_done`` False and
    ``meta_done`` True. ``trial_lengths`` / ``trial_returns`` (B, trials) hold the
    current meta-episode's trials, ``last_trial_returns`` the last finished one's
    (NaN before), ``episodes_completed`` (B,) how many have finished.
    """

    def __init__(
        self,
        config: MetaCartPoleConfig | None = None,
        num_envs: int = 1,
        autoreset: bool = True,
    ):
        self.config = MetaCartPoleConfig() if config is None else config
        if not isinstance(self.config, MetaCartPoleConfig):
            raise ValueError(
                f"config must be a MetaCartPoleConfig, got {type(config).__name__}"
            )
        self.num_envs = check_int("num_envs", num_envs)
        self.autoreset = check_bool("autoreset", autoreset)
        self.seed = None

    def reset(self, seed: int | None = None, first_member: int = 0) -> np.ndarray:
        """Start a meta-episode in every member; the first observations (B, 7)
        (chapter 7)."""
        n = self.num_envs
        if seed is None:
            if self.seed is None or first_member != 0:
                raise ValueError(
                    "the first reset, and any with first_member, needs a seed: call "
                    "reset(seed=...)"
                )
            self.episode += 1
        else:
            self.seed = check_int("seed", seed, minimum=0)
            first = check_int("first_member", first_member, minimum=0)
            self.members = np.arange(first, first + n)
            self.episode = np.zeros(n, np.int64)
            self.episodes_completed = np.zeros(n, np.int64)
            self.last_trial_returns = np.full(
                (n, self.config.trials), np.nan, np.float32
            )
        self.init_state = np.zeros((n, 4))
        self.projection = np.zeros((n, 4, 2))
        self.state = np.zeros((n, 4))
        self.time = np.zeros(n, np.int64)
        self.trial = np.zeros(n, np.int64)
        self.trial_lengths = np.zeros((n, self.config.trials), np.int64)
        self.done = np.zeros(n, bool)
        obs = np.zeros((n, OBS_DIM), np.float32)
        self._begin(np.arange(n), obs)
        self.final_obs = obs.copy()
        return obs

    def _begin(self, rows: np.ndarray, obs: np.ndarray) -> None:
        """Draw and start the current meta-episode of ``rows``; write their first
        observations into ``obs``."""
        init, proj = _draw(
            self.config, self.seed, self.members[rows], self.episode[rows]
        )
        self.init_state[rows], self.projection[rows] = init, proj
        self.state[rows], self.time[rows], self.trial[rows] = init, 0, 0
        self.trial_lengths[rows] = 0
        self.done[rows] = False
        obs[rows, :4] = self._view(init, proj)
        obs[rows, 4:] = (0.0, 0.0, 1.0)

    @staticmethod
    def _view(state: np.ndarray, proj: np.ndarray) -> np.ndarray:
        """P @ clip([x, theta]) for each row, (B, 4) float32."""
        seen = np.clip(state[:, [0, 2]], -OBS_CLIP, OBS_CLIP)
        return (proj[:, :, 0] * seen[:, :1] + proj[:, :, 1] * seen[:, 1:]).astype(
            np.float32
        )

    @property
    def trial_returns(self) -> np.ndarray:
        """Return of each trial of the current meta-episode, (B, trials) float32: its
        length over ``trial_steps`` (chapter 7)."""
        return (self.trial_lengths / self.config.trial_steps).astype(np.float32)

    def step(self, actions):
        """Advance every member one step with ``actions`` (B,) of 0 or 1
        (chapter 7)."""
        if self.seed is None:
            raise ValueError("call reset(seed=...) before step")
        cfg, n = self.config, self.num_envs
        a = check_actions(actions, n)
        live = ~self.done
        x, x_dot, theta, theta_dot = self.state.T
        # Gymnasium's CartPole equations with Euler integration (popjaxrl's too)
        force = np.where(a == 1, FORCE_MAG, -FORCE_MAG)
        cos, sin = np.cos(theta), np.sin(theta)
        total_mass, polemass_length = MASSCART + MASSPOLE, MASSPOLE * cfg.length
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        theta_acc = (GRAVITY * sin - cos * temp) / (
            cfg.length * (4.0 / 3.0 - MASSPOLE * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        new = np.stack(
            [
                x + TAU * x_dot,
                x_dot + TAU * x_acc,
                theta + TAU * theta_dot,
                theta_dot + TAU * theta_acc,
            ],
            axis=1,
        )
        rows = np.flatnonzero(live)
        self.time[rows] += 1
        self.trial_lengths[rows, self.trial[rows]] += 1
        trial_done = live & (
            (np.abs(new[:, 0]) > X_THRESHOLD)
            | (np.abs(new[:, 2]) > THETA_THRESHOLD)
            | (self.time >= cfg.trial_steps)
        )
        # a finished trial restarts from the meta-episode's initial state
        new = np.where(trial_done[:, None], self.init_state, new)
        self.state = np.where(live[:, None], new, self.state)
        self.time[trial_done] = 0
        self.trial += trial_done
        meta_now = trial_done & (self.trial >= cfg.trials)
        reward = np.where(live, np.float32(1.0 / cfg.trial_steps), np.float32(0.0))
        obs = np.zeros((n, OBS_DIM), np.float32)
        # a restarted trial's state is the initial one: its view is what is seen
        obs[:, :4] = self._view(self.state, self.projection)
        obs[:, 4], obs[:, 5] = a, trial_done
        obs[~live] = 0.0
        self.final_obs = obs.copy()
        ended = np.flatnonzero(meta_now)
        if ended.size:
            self.last_trial_returns[ended] = self.trial_returns[ended]
            self.episodes_completed[ended] += 1
            self.done[ended] = True
            if self.autoreset:
                self.episode[ended] += 1
                self._begin(ended, obs)
        meta_done = meta_now if self.autoreset else self.done.copy()
        return obs, reward, trial_done, meta_done
