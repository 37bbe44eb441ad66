"""Gymnasium environments for CartPole tasks: one task (`make_env`) or many at once
(`make_vector_env`).

`CartPoleTaskEnv` is Gymnasium's own `CartPoleEnv` with a task's physics, flipped
actions and hidden-goal reward; `CartPoleTaskVectorEnv` steps many tasks at once
(Gymnasium's vectorised CartPole with one set of parameters per environment);
`compare_with_gymnasium` checks both against Gymnasium step for step.

Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv

from ..io.validation import check_actions, check_int
from .tasks import _PHYSICS, CartPoleTask, _goal_reward

__all__ = [
    "make_env",
    "make_vector_env",
    "CartPoleTaskEnv",
    "CartPoleTaskVectorEnv",
    "TaskDrawEnv",
    "ENV_ID",
    "compare_with_gymnasium",
    "GymnasiumComparison",
]

#: The Gymnasium id under which every task environment is registered.
ENV_ID = "ssm_metarl/CartPoleTask-v0"


def _set_physics(env, gravity, masscart, masspole, length, force_mag) -> None:
    """Set CartPole's physical constants and the two derived ones its `step` reads."""
    env.gravity, env.masscart, env.masspole, env.length, env.force_mag = (
        gravity,
        masscart,
        masspole,
        length,
        force_mag,
    )
    env.total_mass = masspole + masscart
    env.polemass_length = masspole * length


class CartPoleTaskEnv(CartPoleEnv):
    """Gymnasium's `CartPoleEnv` playing one `CartPoleTask`.

    The physics is Gymnasium's own `step`; the task only changes constants, swaps the
    action when `flip` is set, and replaces the reward when `goal` is set.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(
        self, task: CartPoleTask | None = None, render_mode: str | None = None
    ):
        super().__init__(render_mode=render_mode)
        self.task = CartPoleTask() if task is None else task
        if not isinstance(self.task, CartPoleTask):
            raise ValueError(
                f"task must be a CartPoleTask, got {type(self.task).__name__}"
            )
        _set_physics(self, *(getattr(self.task, k) for k in _PHYSICS))

    def step(self, action):
        action = check_actions(action)  # 0 or 1, else a ValueError
        obs, reward, terminated, truncated, info = super().step(
            1 - action if self.task.flip else action
        )
        if self.task.goal is not None and reward != 0.0:
            reward = float(self.task.reward(self.state[0]))
        return obs, reward, terminated, truncated, info


class TaskDrawEnv(CartPoleTaskEnv):
    """A `CartPoleTaskEnv` that draws a new task from `tasks` at every reset, so the
    task stays hidden: what a recurrent learner of a family plays (chapter 6's
    recurrent PPO on flip+physics). Draws come from a generator seeded by the first
    `reset(seed=...)`. Defined in chapter 6 (`06_benchmarks`)."""

    def __init__(self, tasks: Sequence[CartPoleTask], render_mode: str | None = None):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("tasks is empty; pass the tasks to draw from")
        super().__init__(self.tasks[0], render_mode=render_mode)
        self.draws = np.random.default_rng(0)

    def reset(self, *, seed: int | None = None, options=None):
        if seed is not None:
            self.draws = np.random.default_rng(seed)
        self.task = self.tasks[int(self.draws.integers(len(self.tasks)))]
        _set_physics(self, *(getattr(self.task, k) for k in _PHYSICS))
        return super().reset(seed=seed, options=options)


class CartPoleTaskVectorEnv(CartPoleVectorEnv):
    """Gymnasium's vectorised CartPole with one `CartPoleTask` per environment.

    Gymnasium's `CartPoleVectorEnv.step` is pure elementwise numpy, so per-environment
    parameter arrays go straight through it. Finished environments reset themselves on
    the next step (Gymnasium's "next step" autoreset);
    `ssm_metarl.cartpole.rollout.collect` masks those steps out. Defined in chapter 2
    (`02_cartpole_tasks`).
    """

    def __init__(
        self,
        num_envs: int | None = None,
        tasks: Sequence[CartPoleTask] = (),
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ):
        tasks = list(tasks) or [CartPoleTask()] * (num_envs or 1)
        if num_envs is not None and num_envs != len(tasks):
            raise ValueError(
                f"num_envs={num_envs} but {len(tasks)} tasks were given; pass one task "
                "per environment"
            )
        if not all(isinstance(t, CartPoleTask) for t in tasks):
            raise ValueError("tasks must all be CartPoleTask instances")
        steps = (
            max(t.max_steps for t in tasks)
            if max_episode_steps is None
            else check_int("max_episode_steps", max_episode_steps)
        )
        super().__init__(
            num_envs=len(tasks), max_episode_steps=steps, render_mode=render_mode
        )
        self.tasks = tasks
        _set_physics(
            self, *(np.array([getattr(t, k) for t in tasks]) for k in _PHYSICS)
        )
        self.flip = np.array([t.flip for t in tasks])
        self.goal = np.array([np.nan if t.goal is None else t.goal for t in tasks])
        self.has_goal = ~np.isnan(self.goal)
        self.goal_width = np.array(
            [np.nan if t.goal_width is None else t.goal_width for t in tasks]
        )

    def step(self, action):
        # an int array of 0s and 1s, one per environment
        action = check_actions(action, self.num_envs)
        obs, reward, terminated, truncated, info = super().step(
            np.where(self.flip, 1 - action, action)
        )
        if self.has_goal.any():
            goal_reward = _goal_reward(self.state[0], self.goal, self.goal_width)
            reward = np.where(
                self.has_goal & (reward != 0.0), goal_reward, reward
            ).astype(np.float32)
        return obs, reward, terminated, truncated, info


def _register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point=CartPoleTaskEnv,
            vector_entry_point=CartPoleTaskVectorEnv,
        )


def make_env(
    task: CartPoleTask | None = None, render_mode: str | None = None
) -> gym.Env:
    """A real Gymnasium environment for `task`:
    `gym.make("ssm_metarl/CartPoleTask-v0", task=task)`.

    It carries Gymnasium's usual wrappers (time limit at `task.max_steps`, order
    enforcing, passive checker). Defined in chapter 2 (`02_cartpole_tasks`).
    """
    task = CartPoleTask() if task is None else task
    if not isinstance(task, CartPoleTask):
        raise ValueError(f"task must be a CartPoleTask, got {type(task).__name__}")
    _register()
    return gym.make(
        ENV_ID, task=task, render_mode=render_mode, max_episode_steps=task.max_steps
    )


def make_vector_env(
    tasks: Sequence[CartPoleTask], max_episode_steps: int | None = None
) -> CartPoleTaskVectorEnv:
    """One vectorised Gymnasium environment stepping every task in `tasks` at once.

    ```
    gym.make_vec(ENV_ID, num_envs=len(tasks),
                 vectorization_mode="vector_entry_point", tasks=...)
    ```
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("make_vector_env needs at least one task")
    _register()
    return gym.make_vec(
        ENV_ID,
        num_envs=len(tasks),
        vectorization_mode="vector_entry_point",
        tasks=tasks,
        max_episode_steps=max_episode_steps,
    )


class GymnasiumComparison(NamedTuple):
    """What `compare_with_gymnasium` found (chapter 2)."""

    # largest |difference| of an observation (or, against make_env, a reward) over every
    # step
    max_diff: float
    same_end: bool  # every episode terminated at the same step in both simulators
    steps: int  # steps compared


def compare_with_gymnasium(
    task: CartPoleTask, n: int = 16, seed: int = 0
) -> GymnasiumComparison:
    """Play `n` episodes of `task` in `make_vector_env` and, step for step with the same
    actions, in Gymnasium's own `CartPoleEnv` (given the task's physics and the same
    start state) and in `make_env`; report the largest difference of observations (and
    of the rewards of `make_env`, which knows goals, against the vector env's) and
    whether every episode ends at the same step. The actions are the rule a = [θ + 0.5
    θ̇ > 0] (flipped on flipped tasks) with 10% random ones, so episodes are long but
    still end. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    venv = make_vector_env([task] * n)
    obs, _ = venv.reset(seed=seed)
    refs, singles = [], []
    for i in range(n):
        # Gymnasium's own class, which knows nothing of flips and goals
        ref = CartPoleEnv()
        for name in _PHYSICS:  # set here by hand, not by the package's own _set_physics
            setattr(ref, name, getattr(task, name))
        ref.total_mass, ref.polemass_length = (
            task.masscart + task.masspole,
            task.masspole * task.length,
        )
        ref.reset(seed=0)
        ref.state = venv.state[:, i].copy()  # the same start state
        single = make_env(task)
        single.reset(seed=0)
        single.unwrapped.state = venv.state[:, i].copy()
        refs.append(ref)
        singles.append(single)
    rng = np.random.default_rng(seed)
    alive, max_diff, steps, same_end = np.ones(n, bool), 0.0, 0, True
    while alive.any():
        rule = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(int)
        actions = np.where(
            rng.random(n) < 0.1, rng.integers(0, 2, n), rule ^ int(task.flip)
        )
        obs, reward, terminated, truncated, _ = venv.step(actions)
        for i in np.flatnonzero(alive):
            ref_obs, _, ref_terminated, _, _ = refs[i].step(
                int(actions[i] ^ int(task.flip))
            )
            single_obs, single_reward, single_terminated, _, _ = singles[i].step(
                int(actions[i])
            )
            max_diff = max(
                max_diff,
                float(np.abs(obs[i] - ref_obs).max()),
                float(np.abs(single_obs - ref_obs).max()),
                abs(float(reward[i]) - float(single_reward)),
            )
            same_end &= bool(terminated[i]) == ref_terminated == single_terminated
            steps += 1
            alive[i] = not (terminated[i] or truncated[i])
    venv.close()
    for single in singles:
        single.close()
    return GymnasiumComparison(max_diff, bool(same_end), steps)
