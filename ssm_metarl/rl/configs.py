"""The settings of the REINFORCE and PPO loops: one dataclass each, every field with its
default and a one-line meaning.

Besides chapter 2's settings, both loops can weigh every task equally (`balance_tasks`,
see `ssm_metarl.rl.loops`), play several episodes of each task in a batch
(`episodes_per_task`) and draw the batch's tasks half from each flip world
(`task_sampling="by_world"`, `ssm_metarl.rl.batches`). PPO can also validate every
`validate_every` iterations and keep the best weights (`keep="best"`,
`ssm_metarl.rl.stopping`). Chapter 4 trains its in-context policy with those options.
Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..io.validation import check_choice, check_int, check_positive, check_unit_interval

__all__ = ["ReinforceConfig", "PPOConfig", "BASELINES", "TASK_SAMPLING", "KEEP"]

#: What `ReinforceConfig` may subtract from the returns-to-go.
BASELINES = ("batch", "learned", "none")
#: How a batch's tasks are chosen: in the given order (rotating through them when they
#: do not all fit), or at random with half of them from each flip world.
TASK_SAMPLING = ("in_order", "by_world")
#: Which weights a PPO run ends with: the last ones, or the best-validated ones.
KEEP = ("last", "best")


def _validate_config(cfg) -> None:
    """Reject settings that would silently train nothing or diverge, naming the
    field."""
    owner = type(cfg).__name__
    for name in (
        "episodes_per_iter",
        "max_iters",
        "eval_episodes",
        "epochs",
        "critic_steps",
        "episodes_per_task",
        "validate_every",
    ):
        if hasattr(cfg, name):
            check_int(f"{owner}.{name}", getattr(cfg, name))
    for name in ("lr", "critic_lr", "max_seconds", "clip"):
        if hasattr(cfg, name):
            # inf: no time limit
            check_positive(
                f"{owner}.{name}", getattr(cfg, name), finite=(name != "max_seconds")
            )
    for name in ("gamma", "gae_lambda"):
        if hasattr(cfg, name):
            check_unit_interval(f"{owner}.{name}", getattr(cfg, name))
    if cfg.episodes_per_iter % cfg.episodes_per_task:
        raise ValueError(
            f"{owner}.episodes_per_iter={cfg.episodes_per_iter} must be a multiple of "
            f"episodes_per_task={cfg.episodes_per_task}"
        )
    if hasattr(cfg, "baseline"):
        check_choice("baseline", cfg.baseline, BASELINES)
    check_choice("task_sampling", cfg.task_sampling, TASK_SAMPLING)
    n_tasks = cfg.episodes_per_iter // cfg.episodes_per_task
    if cfg.task_sampling == "by_world" and n_tasks % 2:
        raise ValueError(
            f"{owner}: task_sampling='by_world' draws half of a batch's tasks from "
            f"each flip world, so episodes_per_iter / episodes_per_task = {n_tasks} "
            "must be even"
        )
    if hasattr(cfg, "keep"):
        check_choice("keep", cfg.keep, KEEP)


@dataclass
class ReinforceConfig:
    """REINFORCE with a baseline. Defaults solve CartPole-v1 with the card's SSM in
    seconds (chapter 2)."""

    # episodes collected per update (spread over the training tasks)
    episodes_per_iter: int = 16
    gamma: float = 0.99  # discount of the return-to-go
    lr: float = 5e-3  # Adam step size for the policy
    # "batch" (mean return-to-go per time step), "learned" (ValueNet) or "none"
    baseline: str = "batch"
    critic_lr: float = 3e-3  # Adam step size for the learned baseline
    normalize: bool = True  # standardise advantages over the batch
    entropy_coef: float = 0.0  # bonus on the policy's entropy
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm over all parameters)
    max_iters: int = 200  # stop after this many updates ...
    # ... or once this many environment steps were played ...
    max_env_steps: int | None = None
    # ... or after this much wall time (not reproducible: depends on the machine) ...
    max_seconds: float = 60.0
    # ... or once greedy returns reach this (checked as below)
    target_return: float | None = 475.0
    # episodes of the greedy check (vector sim first, then real Gymnasium)
    eval_episodes: int = 100
    # run the check only when the batch's sampled mean return reaches this
    eval_trigger: float = 450.0
    # weigh every task equally: advantages and loss per task (ssm_metarl.rl.loops)
    balance_tasks: bool = False
    # a batch plays episodes_per_iter / episodes_per_task tasks, this many episodes each
    episodes_per_task: int = 1
    # "in_order" (the tasks in turn) or "by_world" (at random, half per flip world)
    task_sampling: str = "in_order"

    def __post_init__(self):
        _validate_config(self)


@dataclass
class PPOConfig:
    """PPO-clip with GAE and a separate critic (`ValueNet`). Defined in chapter 2;
    chapter 4 uses the options from `task_sampling` on."""

    # episodes collected per iteration (small batches: more updates per step)
    episodes_per_iter: int = 8
    # clipped policy steps on each batch (each one re-runs the SSM over the batch)
    epochs: int = 2
    gamma: float = 0.99
    # GAE's lambda: 1 = Monte Carlo returns minus V, 0 = one-step TD errors
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO's epsilon
    lr: float = 3e-3  # Adam step size for the policy
    critic_lr: float = 3e-3  # Adam step size for the critic
    # critic steps per batch (the critic is a cheap MLP on observations)
    critic_steps: int = 10
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    max_iters: int = 200
    max_env_steps: int | None = None
    max_seconds: float = 60.0
    # greedy return that counts as solved (with `validate`: the validation score)
    target_return: float | None = 475.0
    eval_episodes: int = 100
    eval_trigger: float = 450.0
    # weigh every task equally: advantages and loss per task (ssm_metarl.rl.loops)
    balance_tasks: bool = False
    # a batch plays episodes_per_iter / episodes_per_task tasks, this many episodes each
    episodes_per_task: int = 1
    # "in_order" (the tasks in turn) or "by_world" (at random, half per flip world)
    task_sampling: str = "in_order"
    # iterations between calls of train_ppo's `validate` callback, if one is given
    validate_every: int = 20
    # weights at the end: "last", or "best" (best validation score; needs `validate`)
    keep: str = "last"

    def __post_init__(self):
        _validate_config(self)
