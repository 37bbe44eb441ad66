"""MAML for reinforcement learning on CartPole task families: losses, task batches,
adaptation and its evaluation.

The losses and batches MAML-RL trains on (`task_batch`, `policy_gradient_loss`);
`evaluate_adaptation` scores a policy before and after k inner steps on held-out tasks,
and `card_evaluation` is the protocol every shipped model's card reports. The training
run (`ssm_metarl.meta.training.meta_epoch`, `ssm_metarl.meta.training.meta_train`) is in
`ssm_metarl.meta.training`. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..cartpole import (
    rollout,  # rollout.collect looked up at call time (tests interrupt it)
)
from ..cartpole.rollout import Trajectories
from ..cartpole.tasks import get_family
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..models.policy import (
    SSMPolicy,
    TaskBatchedPolicy,
    action_log_probs,
    policy_log_probs,
)
from ..report.stats import Estimate, bootstrap_ci
from ..rl.losses import (
    batch_baseline,
    clipped_surrogate,
    discounted_returns,
    normalize_advantages,
    ppo_clip_loss,
    task_means,
)
from .maml import METHODS, MetaMAML, Params, TaskBatchedLoss, expand_params

__all__ = [
    "MetaRLConfig",
    "task_batch",
    "policy_gradient_loss",
    "held_out_tasks",
    "evaluation_split",
    "tune_inner_lr",
    "AdaptationResult",
    "evaluate_adaptation",
    "card_evaluation",
    "TEST_SEED",
    "INNER_LRS",
    "METHODS",
    "TaskPolicy",
]  # the training run itself is in ssm_metarl.meta.training

log = logging.getLogger(__name__)

#: Seed of the adaptation and scoring episodes on held-out test tasks (model cards,
#: chapter 3).
TEST_SEED = 31_337
#: Adaptation step sizes `tune_inner_lr` tries.
INNER_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class MetaRLConfig:
    """Everything `meta_train` needs. Field names follow the model card's flags
    (chapter 3)."""

    # task family (`ssm_metarl.cartpole.tasks.FAMILIES`); the hidden goal needs
    # adaptation
    family: str = "goal"
    # one of METHODS: second-order MAML, first-order MAML, or multi-task training
    mode: str = "maml"
    epochs: int = 300  # outer updates (the card: 50)
    tasks_per_epoch: int = 20  # tasks per outer update, the meta-batch (the card: 5)
    # episodes per task for the inner step (support) and again for the outer loss
    # (query)
    episodes: int = 10
    # inner policy-gradient steps; evaluate with the same number
    adaptation_steps: int = 1
    inner_lr: float = 0.01  # alpha (the card: 0.01)
    # Adam's learning rate for the initialisation (the card: 0.001)
    outer_lr: float = 0.001
    gamma: float = 0.99  # discount of the returns-to-go
    # PPO clip of the importance ratio; only active from the second inner step on
    clip: float = 0.2
    max_grad_norm: float = 1.0  # outer-gradient clipping
    eval_every: int = 10  # validate (and maybe select) every this many epochs
    eval_episodes: int = 10  # episodes per validation task after adapting
    # evaluate the adapted policy with argmax actions instead of sampling
    greedy_eval: bool = False
    seed: int = 0

    def __post_init__(self):
        check_choice("mode", self.mode, METHODS)
        for name in (
            "epochs",
            "tasks_per_epoch",
            "episodes",
            "eval_every",
            "eval_episodes",
        ):
            check_int(name, getattr(self, name))
        check_int("adaptation_steps", self.adaptation_steps, minimum=0)
        for name in ("inner_lr", "outer_lr", "clip", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        check_unit_interval("gamma", self.gamma)

    def to_dict(self) -> dict:
        return asdict(self)


def _seed(*parts: int) -> int:
    """A deterministic seed from integers (so iteration `i` of a resumed run sees the
    same data)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**31 - 1)
    return value


def _base(policy) -> SSMPolicy:
    """A model (e.g. `ssm_metarl.StateSpaceModel`) as an `SSMPolicy`; an SSMPolicy as it
    is."""
    return policy if isinstance(policy, SSMPolicy) else SSMPolicy(policy)


def TaskPolicy(
    model, params: Params, episodes_per_task: int | None = None
) -> TaskBatchedPolicy:
    """The adapted policies of a meta-batch: `model` with per-task `params` (old name,
    chapter 3)."""
    return TaskBatchedPolicy(_base(model), params)


def task_batch(
    policy, traj: Trajectories, n_tasks: int, gamma: float = 0.99
) -> dict[str, torch.Tensor]:
    """Turn collected episodes into a policy-gradient batch with a leading task
    dimension.

    Advantages are the returns-to-go minus the per-task batch baseline, normalised
    within each task (`ssm_metarl.rl.losses`). `old_log_probs` are the log-probabilities
    of the actions under `policy`, the policy that collected them. Defined in chapter 3.
    """
    with torch.no_grad():
        old_log_probs, _ = policy_log_probs(policy, traj)
        returns = discounted_returns(traj.rewards, traj.mask, gamma)
    per_task = lambda x: x.reshape(n_tasks, -1, *x.shape[1:])
    returns, mask = per_task(returns), per_task(traj.mask)
    advantages = torch.func.vmap(
        lambda g, m: normalize_advantages(g - batch_baseline(g, m), m)
    )(returns, mask)
    return {
        "obs": per_task(traj.obs),
        "actions": per_task(traj.actions),
        "rewards": per_task(traj.rewards),
        "mask": mask,
        "advantages": advantages,
        "old_log_probs": per_task(old_log_probs),
    }


def policy_gradient_loss(policy, clip: float = 0.2) -> TaskBatchedLoss:
    r"""The policy-gradient surrogate of `ssm_metarl.rl.losses` as a MAML loss, for
    `policy` (a model or an SSMPolicy).

    It is PPO's clipped surrogate, $-\mathbb{E}[\min(\rho A, \mathrm{clip}(\rho) A)]$
    with $\rho = \pi_\theta(a|h)/\pi_{old}(a|h)$. At the weights that collected the data
    $\rho = 1$, so its gradient is exactly REINFORCE's; its second derivative keeps the
    $\nabla\log\pi\,\nabla\log\pi^\top A$ term that `-log pi * A` drops (the "LVC"
    surrogate of ProMP, Rothfuss et al. 2019). Log-probabilities are recomputed by
    teacher forcing (backpropagation through time). The loss is a
    `ssm_metarl.meta.maml.TaskBatchedLoss`: every task's weights run on its own episodes
    as batched matmuls; its `one_task` form is the same loss for one task, which
    `MetaMAML` maps with `vmap`: the same numbers. `batch["rewards"]` is needed only by
    policies that see rewards. Defined in chapter 3 (`03_maml`).
    """
    base = _base(policy)

    def rewards(batch):
        return (
            batch["rewards"]
            if "rewards" in batch
            else torch.zeros_like(batch["advantages"])
        )

    def batched(params: Params, batch: dict) -> torch.Tensor:
        logits = TaskBatchedPolicy(base, params).logits(
            batch["obs"], batch["actions"], rewards(batch)
        )
        log_probs, _ = action_log_probs(logits, batch["actions"])
        surrogate = clipped_surrogate(
            log_probs, batch["old_log_probs"], batch["advantages"], clip
        )
        return -task_means(surrogate, batch["mask"])

    def one_task(params: Params, batch: dict) -> torch.Tensor:
        logits = type(base)(base.model, params).logits(
            batch["obs"], batch["actions"], rewards(batch)
        )
        log_probs, _ = action_log_probs(logits, batch["actions"])
        return ppo_clip_loss(
            log_probs, batch["old_log_probs"], batch["advantages"], batch["mask"], clip
        )

    return TaskBatchedLoss(batched, one_task)


def held_out_tasks(family, n: int = 48) -> list:
    """`n` held-out test tasks of `family`: its fixed test split, topped up with more
    draws from the test distribution (a separate seed) when `n` is larger. A finite
    family ("flip": 2 tasks) repeats its tasks; each repeat adapts on its own episodes.
    Never used in training or checkpoint selection. Defined in chapter 3 (`03_maml`)."""
    tasks = list(family.test)[:n]
    if family.finite:
        return [tasks[i % len(tasks)] for i in range(n)]
    if len(tasks) < n:
        tasks += family.sample(n - len(tasks), seed=TEST_SEED, split="test")
    return tasks


def tune_inner_lr(
    model, family, steps: int = 1, episodes: int = 10, lrs=INNER_LRS, seed: int = 0
) -> tuple[float, dict[float, float]]:
    """The adaptation step size that maximises the mean return after `steps` steps on
    the *validation* tasks of `family`; returns `(best_lr, {lr: mean return})`.

    Baselines that were not meta-trained for one step size (the multi-task and random
    initialisations) get their best one this way, so that MAML is compared with the
    strongest version of each. The test split is never used. Defined in chapter 3.
    """
    scores = {}
    for lr in lrs:
        result = evaluate_adaptation(
            model,
            list(family.validation),
            steps=(steps,),
            episodes=episodes,
            eval_episodes=episodes,
            inner_lr=lr,
            seed=_seed(seed, 424_242),
        )
        scores[float(lr)] = float(result.returns[steps].mean())
    return max(scores, key=scores.get), scores


@dataclass
class AdaptationResult:
    """Returns of a policy before and after k inner steps on each task: `returns[k]` is
    (n_tasks,).

    Each task's support episodes are collected once with the initial policy; the adapted
    policies are scored on fresh episodes. Defined in chapter 3 (`03_maml`).
    """

    steps: list[int]
    returns: dict[int, Any]  # k -> numpy array of per-task mean returns
    episodes: int
    eval_episodes: int

    def estimate(self, k: int, seed: int = 0) -> Estimate:
        """Mean over tasks of the return after `k` steps, with a 95% bootstrap CI."""
        return bootstrap_ci(self.returns[k], seed=seed)

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "episodes": self.episodes,
            "eval_episodes": self.eval_episodes,
            "returns": {str(k): [float(v) for v in r] for k, r in self.returns.items()},
            "estimates": {str(k): self.estimate(k).to_dict() for k in self.steps},
        }


def evaluate_adaptation(
    policy,
    tasks,
    steps=(0, 1),
    episodes: int = 10,
    eval_episodes: int = 10,
    inner_lr: float = 0.01,
    seed: int = 0,
    gamma: float = 0.99,
    clip: float = 0.2,
    greedy: bool = False,
) -> AdaptationResult:
    """Adapt `policy` (a model or an SSMPolicy) to every task with k policy-gradient
    steps on `episodes` episodes, for each k in `steps`.

    The support episodes are collected once per task with the unadapted policy (seed
    `seed`); the k-th step reuses them (the clipped ratio corrects for the policy having
    moved). Every adapted policy is then scored on `eval_episodes` fresh episodes per
    task (seed `seed + 1`). The model is not modified. Defined in chapter 3 (`03_maml`).
    """
    base, tasks = _base(policy), list(tasks)
    steps = sorted(set(int(k) for k in steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"steps must be non-negative ints, got {steps}")
    n = len(tasks)
    maml = MetaMAML(base.model, inner_lr=inner_lr, first_order=True)
    loss_fn = policy_gradient_loss(base, clip)
    support = task_batch(
        base, rollout.collect(base, tasks, episodes, seed=seed), n, gamma
    )
    params = {k: v.detach() for k, v in expand_params(maml.params(), n).items()}
    returns, done = {}, 0
    for k in steps:
        if k > done:
            params = {
                name: v.detach()
                for name, v in maml.adapt(
                    loss_fn, support, steps=k - done, params=params
                ).items()
            }
            done = k
        traj = rollout.collect(
            TaskBatchedPolicy(base, params),
            tasks,
            eval_episodes,
            seed=seed + 1,
            greedy=greedy,
        )
        returns[k] = traj.returns.reshape(n, eval_episodes).mean(dim=1).double().numpy()
    return AdaptationResult(steps, returns, episodes, eval_episodes)


def card_evaluation(policy, config: MetaRLConfig, test_tasks: int = 48) -> dict:
    """The model cards' evaluation protocol, after `meta_train` with `config`.

    A model not meta-trained for one step size (`mode="multitask"`) first gets its best
    one on the validation tasks (`tune_inner_lr`). Then it adapts with k = 0, 1, 3, 5
    (and `adaptation_steps`) steps on `config.episodes` episodes of each of `test_tasks`
    held-out tasks and is scored on as many fresh ones (seed `TEST_SEED`). Returns the
    card's fields. Defined in chapter 3 (`03_maml`).
    """
    family = get_family(config.family)
    adaptation_lr, lr_scores = config.inner_lr, None
    if config.mode == "multitask":
        adaptation_lr, lr_scores = tune_inner_lr(
            policy,
            family,
            steps=max(1, config.adaptation_steps),
            episodes=config.episodes,
            seed=config.seed,
        )
    tasks = held_out_tasks(family, test_tasks)
    evaluation = evaluate_adaptation(
        policy,
        tasks,
        steps=sorted({0, 1, config.adaptation_steps, 3, 5}),
        episodes=config.episodes,
        eval_episodes=config.episodes,
        inner_lr=adaptation_lr,
        seed=TEST_SEED,
        greedy=config.greedy_eval,
    )
    return {
        "adaptation_lr": adaptation_lr,
        "adaptation_lr_validation": None
        if lr_scores is None
        else {str(k): v for k, v in lr_scores.items()},
        "evaluation": {
            "split": evaluation_split(family, len(tasks)),
            "protocol": (
                f"adapt with k policy-gradient steps (inner lr {adaptation_lr}) on "
                f"{config.episodes} episodes per task, score {config.episodes} fresh "
                "episodes"
            ),
            **evaluation.to_dict(),
        },
    }


def evaluation_split(family, n: int) -> str:
    """What a card's "held-out" evaluation really was. A finite family ("flip": two
    tasks) has no unseen tasks: its n evaluations repeat the tasks it trained and was
    selected on. Defined in chapter 3."""
    if family.finite:
        tasks = len(family.test)
        return (
            f"not held out: the {tasks} tasks of the finite family {family.name!r}, "
            "each repeated "
            f"{n // tasks} times; the same tasks were used for training and checkpoint "
            "selection"
        )
    return f"test: {n} held-out tasks of family {family.name!r}"
