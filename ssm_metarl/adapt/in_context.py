"""In-context adaptation: a recurrent policy that infers the task in its hidden state,
trained with a per-task balanced PPO loss.

No weight changes at test time. A policy trained on many tasks with every task's loss
weighted equally (advantages standardised within each task, each task's loss averaged
over its own steps: `ssm_metarl.rl.losses.masked_mean` with `n_tasks`) learns to probe,
read the answer off its state and act on it. On flip tasks that needs both worlds in
every batch (`ssm_metarl.rl.batches.stratified_tasks`) and several episodes of each
task, so that the per-task normalisation compares episodes of the same task.
`train_in_context` is chapter 2's `ssm_metarl.rl.loops.train_ppo` with those options
(`InContextConfig.ppo_config`) and a validation callback that keeps the weights whose
worse world scores best, greedy, on `validation_worlds`; `evaluate_in_context` and
`hidden_states` measure what it learned. Taught in chapter 4
(`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..cartpole.rollout import collect
from ..cartpole.tasks import CartPoleTask, get_family
from ..cartpole.trajectories import Trajectories
from ..io.validation import check_choice, check_int, check_positive
from ..models.memory import MemoryPolicy
from ..models.policy import SSMPolicy
from ..report.stats import Estimate, bootstrap_ci
from ..rl.configs import KEEP, PPOConfig
from ..rl.loops import TrainResult, train_ppo

__all__ = [
    "InContextConfig",
    "train_in_context",
    "validation_worlds",
    "InContextResult",
    "evaluate_in_context",
    "hidden_states",
    "VALIDATION_SEED",
]

#: Seed of the extra validation tasks drawn from the training ranges (never a test
#: task).
VALIDATION_SEED = 5_555


@dataclass
class InContextConfig:
    """Chapter 4's recipe for an in-context flip policy: balanced PPO, both worlds in
    every batch."""

    family: str = "flip+physics"  # training tasks: the family's fixed training split
    # weigh every step, not every task, equally: the loss that locks onto one world
    unbalanced: bool = False
    # tasks per batch, half of them from each flip world, drawn at random
    tasks_per_iter: int = 2
    episodes_per_task: int = 4  # episodes of each task per batch
    lr: float = 3e-3  # Adam step size of the policy (chapter 2's PPOConfig)
    critic_lr: float = 3e-3  # Adam step size of the critic
    epochs: int = 2  # clipped policy steps per batch
    critic_steps: int = 10  # critic steps per batch
    clip: float = 0.2  # PPO's epsilon
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 1.0
    max_seconds: float = 480.0  # wall-time budget
    max_env_steps: int = 3_000_000  # environment-step budget
    # iterations between greedy validations (the best-scoring weights are kept)
    eval_every: int = 20
    # stop once the worse world's validation return reaches this
    target_return: float = 499.5
    # "best": the weights whose worse world validated best; "last": the final weights
    keep: str = "best"
    seed: int = 0

    def __post_init__(self):
        for name in (
            "tasks_per_iter",
            "episodes_per_task",
            "epochs",
            "critic_steps",
            "max_env_steps",
            "eval_every",
        ):
            check_int(name, getattr(self, name))
        if self.tasks_per_iter % 2:
            raise ValueError(
                "tasks_per_iter must be even (half per flip world), got "
                f"{self.tasks_per_iter}"
            )
        for name in ("lr", "critic_lr", "clip", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        check_positive("max_seconds", self.max_seconds, finite=False)
        check_choice("keep", self.keep, KEEP)
        if "flip" not in get_family(self.family).components:
            raise ValueError(
                "family must include flip (the recipe balances the two flip worlds), "
                f"got {self.family!r}"
            )

    def ppo_config(self) -> PPOConfig:
        """The recipe as options of chapter 2's PPO loop (chapter 4)."""
        return PPOConfig(
            episodes_per_iter=self.tasks_per_iter * self.episodes_per_task,
            episodes_per_task=self.episodes_per_task,
            task_sampling="by_world",
            balance_tasks=not self.unbalanced,
            epochs=self.epochs,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            clip=self.clip,
            lr=self.lr,
            critic_lr=self.critic_lr,
            critic_steps=self.critic_steps,
            max_grad_norm=self.max_grad_norm,
            # every iteration plays at least one step: the step budget ends it first
            max_iters=self.max_env_steps,
            max_env_steps=self.max_env_steps,
            max_seconds=self.max_seconds,
            target_return=self.target_return,
            validate_every=self.eval_every,
            keep=self.keep,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def validation_worlds(family: str) -> list[CartPoleTask]:
    """Both worlds at the default physics, the family's 16 validation tasks and 32 more
    from the training ranges (`VALIDATION_SEED`): what `train_in_context` selects on.
    Defined in chapter 4."""
    fam = get_family(family)
    return (
        [CartPoleTask(flip=f) for f in (False, True)] * 4
        + list(fam.validation)
        + fam.sample(32, seed=VALIDATION_SEED, split="validation")
    )


def train_in_context(
    model, config: InContextConfig | None = None, progress: bool = False
) -> TrainResult:
    """Train `model` (in place) with balanced PPO on both flip worlds; keep the weights
    whose worse world scores best on `validation_worlds` (greedy). Defined in chapter 4
    (`04_test_time_adaptation`)."""
    cfg = config or InContextConfig()
    # chapter 7 trains its memory policies with the same recipe
    policy = model if isinstance(model, (SSMPolicy, MemoryPolicy)) else SSMPolicy(model)
    validation = validation_worlds(cfg.family)

    def worse_world(policy) -> tuple[float, dict]:
        """Greedy returns on both worlds' validation tasks; the score is the worse."""
        check = evaluate_in_context(policy, validation, 2, seed=777 + cfg.seed)
        normal, flipped = check.world(False).mean, check.world(True).mean
        return min(normal, flipped), {"normal": normal, "flipped": flipped}

    result = train_ppo(
        policy,
        list(get_family(cfg.family).train),
        cfg.ppo_config(),
        seed=cfg.seed,
        progress=progress,
        validate=worse_world,
    )
    result.algorithm, result.config = "ppo-in-context", cfg.to_dict()
    return result


@dataclass
class InContextResult:
    """Returns of a policy with no weight change, per task, split by flip world
    (chapter 4)."""

    returns: np.ndarray  # (n_tasks,) mean return of each task
    flip: np.ndarray  # (n_tasks,) bool
    greedy: bool
    episodes: int

    def world(self, flipped: bool, seed: int = 0) -> Estimate:
        """Mean return over the tasks of one world, with a 95% bootstrap CI over
        tasks."""
        return bootstrap_ci(self.returns[self.flip == flipped], seed=seed)

    def to_dict(self) -> dict:
        return {
            "greedy": self.greedy,
            "episodes": self.episodes,
            "returns": [float(r) for r in self.returns],
            "flip": [bool(f) for f in self.flip],
            "normal": self.world(False).to_dict(),
            "flipped": self.world(True).to_dict(),
        }


def evaluate_in_context(
    policy, tasks, episodes: int = 5, seed: int = 0, greedy: bool = True
) -> InContextResult:
    """Play `episodes` episodes of every task with no adaptation step: whatever adapting
    happens, happens in the policy's hidden state. Defined in chapter 4
    (`04_test_time_adaptation`)."""
    tasks = list(tasks)
    traj = collect(policy, tasks, episodes, seed=seed, greedy=greedy)
    returns = traj.returns.reshape(len(tasks), episodes).mean(1).double().numpy()
    return InContextResult(returns, np.array([t.flip for t in tasks]), greedy, episodes)


@torch.no_grad()
def hidden_states(policy, traj: Trajectories) -> torch.Tensor:
    """The recurrent state after every stored step of `traj`, (N, T, state_dim), by
    running the policy over the stored inputs (as while acting). What a linear probe
    reads. Defined in chapter 4."""
    policy = policy if isinstance(policy, SSMPolicy) else SSMPolicy(policy)
    state, states = policy.initial_state(traj.obs.shape[0]), []
    prev_action, prev_reward = (
        torch.full_like(traj.actions[:, 0], -1),
        torch.zeros_like(traj.rewards[:, 0]),
    )
    for t in range(traj.obs.shape[1]):
        _, state = policy.step(traj.obs[:, t], prev_action, prev_reward, state)
        states.append(state)
        prev_action, prev_reward = traj.actions[:, t], traj.rewards[:, t]
    return torch.stack(states, dim=1)
