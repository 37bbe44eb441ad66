"""Meta-training runs for MAML-RL: one epoch (`meta_epoch`), and the resumable run
around it (chapter 3).

`meta_train` repeats `meta_epoch`, validates on the family's validation tasks, keeps
the best weights, and saves a `MetaRunState` (`ssm_metarl.meta.run_state`) so that an
interrupted run resumes with identical results. Taught in chapter 3
(`book/03_maml.md`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass

from ..cartpole import (
    rollout,  # rollout.collect looked up at call time (tests interrupt it)
)
from ..cartpole.tasks import get_family
from ..io.validation import check_positive
from ..models.policy import TaskBatchedPolicy
from ..report.progress import log_row, progress_bar
from .evaluation import evaluate_adaptation
from .maml import MetaMAML
from .maml_rl import (
    MetaRLConfig,
    _base,
    _seed,
    inner_params,
    policy_gradient_loss,
    task_batch,
)
from .per_task import expand_params
from .run_state import MetaRunState

__all__ = ["meta_epoch", "MetaTrainResult", "meta_train"]

log = logging.getLogger(__name__)


def meta_epoch(
    maml: MetaMAML, policy, loss_fn, family, cfg: MetaRLConfig, epoch: int
) -> dict:
    """One outer update of MAML-RL on `cfg.tasks_per_epoch` training tasks; returns the
    epoch's log row.

    Support episodes with the current policy, one inner step per task, query episodes
    with each task's adapted policy, one outer step on the query loss.
    `mode="multitask"` skips the inner loop and steps on 2 x `episodes` episodes per
    task. Every draw is seeded by (seed, epoch). Defined in chapter 3 (`03_maml`).
    """
    n = cfg.tasks_per_epoch
    tasks = family.sample(n, seed=_seed(cfg.seed, epoch, 1), split="train")
    if cfg.mode == "multitask":  # the same data, no meta-learning
        support = query = rollout.collect(
            policy, tasks, 2 * cfg.episodes, seed=_seed(cfg.seed, epoch, 2)
        )
        loss = maml.task_losses(
            loss_fn,
            expand_params(maml.params(), n),
            task_batch(policy, support, n, cfg.gamma),
        )
    else:
        support = rollout.collect(
            policy, tasks, cfg.episodes, seed=_seed(cfg.seed, epoch, 2)
        )
        # inner step(s), all tasks at once
        adapted = maml.adapt(loss_fn, task_batch(policy, support, n, cfg.gamma))
        adapted_policy = TaskBatchedPolicy(
            policy, {k: v.detach() for k, v in adapted.items()}
        )
        query = rollout.collect(
            adapted_policy, tasks, cfg.episodes, seed=_seed(cfg.seed, epoch, 3)
        )
        loss = maml.task_losses(
            loss_fn, adapted, task_batch(adapted_policy, query, n, cfg.gamma)
        )
    step = maml.step(loss.mean())  # outer step, through the inner one
    return {
        "epoch": epoch,
        "pre_return": float(support.returns.mean()),
        "post_return": float(query.returns.mean()),
        "loss": step.loss,
        "grad_norm": step.grad_norm,
        "applied": step.applied,
        "env_steps": support.num_steps
        + (query.num_steps if query is not support else 0),
    }


@dataclass
class MetaTrainResult:
    """What `meta_train` did. `history` has one row per epoch (pre- and post-update
    returns, loss, gradient norm, wall time); `validation` one row per validation
    (chapter 3)."""

    config: dict
    history: dict[str, list]
    validation: dict[str, list]
    # epoch whose weights were kept (selected on validation tasks)
    best_epoch: int | None
    best_validation: float | None
    seconds: float  # wall time of this process's part of the run
    total_seconds: float  # wall time summed over resumed parts
    env_steps: int
    skipped_updates: int
    resumed_from: int  # first epoch run by this process (0 unless resumed)
    stopped_early: bool = False  # the time budget ended the run before `epochs`

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(policy, cfg: MetaRLConfig, family, run: MetaRunState, epoch: int) -> None:
    """Adapt to the validation tasks, log the returns, and keep the weights if they are
    the best so far."""
    result = evaluate_adaptation(
        policy,
        list(family.validation),
        steps=(0, cfg.adaptation_steps),
        episodes=cfg.episodes,
        eval_episodes=cfg.eval_episodes,
        inner_lr=cfg.inner_lr,
        seed=_seed(cfg.seed, 999_983),
        gamma=cfg.gamma,
        clip=cfg.clip,
        greedy=cfg.greedy_eval,
        inner_params=inner_params(cfg.mode),
    )
    pre, post = (
        float(result.returns[0].mean()),
        float(result.returns[cfg.adaptation_steps].mean()),
    )
    log_row(run.validation, epoch=epoch, pre=pre, post=post)
    log.info(
        "epoch %d: validation return %.1f before, %.1f after %d step(s); last batch "
        "%.1f -> %.1f",
        epoch,
        pre,
        post,
        cfg.adaptation_steps,
        run.history["pre_return"][-1],
        run.history["post_return"][-1],
    )
    # MAML is selected on what it is trained for, the return after adapting; the
    # multi-task baseline on its own objective, the return without adapting (its best
    # adaptation step size is chosen later, also on validation tasks: see
    # `tune_inner_lr`).
    score = pre if cfg.mode == "multitask" else post
    if score > run.best_score:
        run.best_score, run.best_epoch = score, epoch
        run.best_state = {
            k: v.detach().clone() for k, v in policy.model.state_dict().items()
        }


def meta_train(
    model,
    config: MetaRLConfig | None = None,
    checkpoint: str | None = None,
    resume: bool = True,
    progress: bool = True,
    max_seconds: float | None = None,
    fresh: str = "pass resume=False or another checkpoint path",
) -> MetaTrainResult:
    """Meta-train `model` (in place; or an SSMPolicy's model) on a CartPole task family;
    return the log.

    Each epoch is one `meta_epoch`. Every `eval_every` epochs the policy is adapted to
    the fixed *validation* tasks and scored; the best-scoring weights are loaded into
    the model at the end (the test split is never looked at). With `checkpoint` set, the
    `MetaRunState` is saved atomically there at each validation, and `resume=True`
    continues from it with identical results, because every epoch's tasks and episodes
    are seeded by (seed, epoch). `max_seconds` stops early, after a validation, once
    that much wall time has passed (`stopped_early` then says so; resuming continues the
    run). A resume file that is unsafe, damaged, non-finite or of another run is refused
    (`MetaRunState.check`), with `fresh` saying how to start afresh. Defined in
    chapter 3 (`03_maml`).
    """
    cfg, policy = config or MetaRLConfig(), _base(model)
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds, finite=False)
    family = get_family(cfg.family)
    maml = MetaMAML(
        policy.model,
        cfg.inner_lr,
        cfg.outer_lr,
        first_order=(cfg.mode == "fomaml"),
        inner_steps=cfg.adaptation_steps,
        max_grad_norm=cfg.max_grad_norm,
        inner_params=inner_params(cfg.mode),
    )
    loss_fn = policy_gradient_loss(policy, cfg.clip)
    run = MetaRunState()
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        run = MetaRunState.load(checkpoint, policy.model, maml, cfg, fresh)
        log.info("resumed %s at epoch %d", checkpoint, run.next_epoch)
    start_epoch, previous_seconds = run.next_epoch, run.seconds
    start, stopped_early = time.perf_counter(), False
    bar = progress_bar(
        range(start_epoch, cfg.epochs),
        enabled=progress,
        initial=start_epoch,
        total=cfg.epochs,
        desc=f"meta-train {cfg.mode}",
    )
    for epoch in bar:
        row = meta_epoch(maml, policy, loss_fn, family, cfg, epoch)
        run.env_steps += row.pop("env_steps")
        log_row(
            run.history,
            **row,
            env_steps=run.env_steps,
            seconds=previous_seconds + time.perf_counter() - start,
        )
        bar.set_postfix(
            pre=f"{row['pre_return']:.0f}", post=f"{row['post_return']:.0f}"
        )
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            _validate(policy, cfg, family, run, epoch)
            run.next_epoch, run.seconds = (
                epoch + 1,
                previous_seconds + time.perf_counter() - start,
            )
            if checkpoint is not None:
                run.save(checkpoint, policy.model, maml, cfg)
            if (
                max_seconds is not None
                and time.perf_counter() - start >= max_seconds
                and epoch + 1 < cfg.epochs
            ):
                stopped_early = True
                log.info(
                    "time budget of %.0f s used up after epoch %d", max_seconds, epoch
                )
                break
    bar.close()
    seconds = time.perf_counter() - start
    if run.best_state is not None:
        policy.model.load_state_dict(run.best_state)
    return MetaTrainResult(
        cfg.to_dict(),
        run.history,
        run.validation,
        run.best_epoch,
        None if run.best_epoch is None else run.best_score,
        seconds,
        previous_seconds + seconds,
        run.env_steps,
        maml.skipped_updates,
        start_epoch,
        stopped_early,
    )
