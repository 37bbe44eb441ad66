"""Adaptation evaluation for MAML-RL: test tasks, returns before and after k inner
steps, and the model cards' evaluation protocol (chapter 3).

`evaluate_adaptation` scores a policy before and after k policy-gradient steps on each
task; `test_tasks` are the tasks a card is scored on (seed `TEST_SEED`), never used in
training or selection. They are *test* tasks, not held out: for a goal family they are
fresh draws from the training distribution (the held-out regions are in
`ssm_metarl.cartpole.task_sets`); `card_evaluation` is the protocol every shipped
model's card reports, with `tune_inner_lr` giving baselines their best step size on
validation tasks. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cartpole import (
    rollout,  # rollout.collect looked up at call time (tests interrupt it)
)
from ..cartpole.tasks import get_family
from ..models.policy import TaskBatchedPolicy
from ..report.stats import Estimate, bootstrap_ci
from .maml import MetaMAML
from .maml_rl import (
    MetaRLConfig,
    _base,
    _seed,
    policy_gradient_loss,
    task_batch,
)
from .per_task import expand_params

__all__ = [
    "TEST_SEED",
    "INNER_LRS",
    "test_tasks",
    "held_out_tasks",
    "evaluation_split",
    "AdaptationResult",
    "evaluate_adaptation",
    "tune_inner_lr",
    "card_evaluation",
]

#: Seed of the adaptation and scoring episodes on test tasks (model cards, chapter 3).
TEST_SEED = 31_337
#: Adaptation step sizes `tune_inner_lr` tries.
INNER_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def test_tasks(family, n: int = 48) -> list:
    """`n` test tasks of `family`: its fixed test split, topped up with more draws from
    the test distribution (a separate seed) when `n` is larger. Never used in training
    or checkpoint selection, but not held out either where the test distribution is the
    training one (goals); physics come from the held-out ranges. A finite family
    ("flip": 2 tasks) repeats its tasks; each repeat adapts on its own episodes.
    Defined in chapter 3 (`03_maml`)."""
    tasks = list(family.test)[:n]
    if family.finite:
        return [tasks[i % len(tasks)] for i in range(n)]
    if len(tasks) < n:
        tasks += family.sample(n - len(tasks), seed=TEST_SEED, split="test")
    return tasks


#: The old name of `test_tasks` (chapter 3): kept so that older code still runs.
held_out_tasks = _test_tasks = test_tasks


def evaluation_split(family, n: int) -> str:
    """What a card's test evaluation really was. A finite family ("flip": two
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
    if "physics" in family.components:
        return (
            f"test: {n} tasks of family {family.name!r} with physics from the held-out "
            "ranges"
        )
    return (
        f"test: {n} unseen tasks of family {family.name!r}, drawn from the training "
        "distribution (not held out)"
    )


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
    inner_params: tuple[str, ...] | None = None,
) -> AdaptationResult:
    """Adapt `policy` (a model or an SSMPolicy) to every task with k policy-gradient
    steps on `episodes` episodes, for each k in `steps`.

    The support episodes are collected once per task with the unadapted policy (seed
    `seed`); the k-th step reuses them (the clipped ratio corrects for the policy having
    moved). Every adapted policy is then scored on `eval_episodes` fresh episodes per
    task (seed `seed + 1`). `inner_params` restricts the steps to some weights (ANIL's
    head, `ssm_metarl.models.ssm.OUTPUT_HEAD`). The model is not modified. Defined in
    chapter 3 (`03_maml`).
    """
    base, tasks = _base(policy), list(tasks)
    steps = sorted(set(int(k) for k in steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"steps must be non-negative ints, got {steps}")
    n = len(tasks)
    maml = MetaMAML(
        base.model, inner_lr=inner_lr, first_order=True, inner_params=inner_params
    )
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


def tune_inner_lr(
    model,
    family,
    steps: int = 1,
    episodes: int = 10,
    lrs=INNER_LRS,
    seed: int = 0,
    inner_params: tuple[str, ...] | None = None,
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
            inner_params=inner_params,
        )
        scores[float(lr)] = float(result.returns[steps].mean())
    return max(scores, key=scores.get), scores


def card_evaluation(policy, config: MetaRLConfig, test_tasks: int = 48) -> dict:
    """The model cards' evaluation protocol, after `meta_train` with `config`.

    A model not meta-trained for one step size (`mode="multitask"`) first gets its best
    one on the validation tasks (`tune_inner_lr`). Then it adapts with k = 0, 1, 3, 5
    (and `adaptation_steps`) steps on `config.episodes` episodes of each of `test_tasks`
    test tasks and is scored on as many fresh ones (seed `TEST_SEED`). Returns the
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
    tasks = _test_tasks(family, test_tasks)
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
