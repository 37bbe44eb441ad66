"""When a training run stops, and which weights it ends with.

After every iteration a loop asks its `StopRule` whether the run is over: solved, or out
of budget (`max_seconds`, `max_env_steps`; `max_iters` is the loop's own range). By
default "solved" is chapter 2's greedy check on the training tasks (`solve_check`). With
a validation callback (chapter 4) the run is scored every `validate_every` iterations on
tasks of the caller's choosing, every score is logged, the best-scoring weights are
remembered, and "solved" means the score reached `target_return`; with `keep="best"` the
run ends with the best weights instead of the last ones. Taught in chapter 2
(`book/02_cartpole_tasks.md`); selection on validation in chapter 4.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from ..cartpole.rollout import evaluate
from ..report.progress import log_row

__all__ = ["solve_check", "StopRule", "Validate"]

#: A validation callback: the policy -> (score, row). Higher scores are better; the row
#: (numbers by name) is logged beside the iteration and step count.
Validate = Callable[[Any], tuple[float, dict]]


def solve_check(policy, tasks, cfg, seed: int, result) -> bool:
    """Greedy check: the vectorised simulator first (cheap), then real Gymnasium
    episodes to confirm (recorded in `result.final_eval`). Defined in chapter 2."""
    tasks = list(tasks)
    per_task = max(1, cfg.eval_episodes // len(tasks))
    quick = evaluate(policy, tasks, per_task, seed=10_000 + seed)
    if quick.mean < cfg.target_return:
        return False
    real = evaluate(policy, tasks, per_task, seed=20_000 + seed, backend="gymnasium")
    result.final_eval = real.to_dict()
    return real.mean >= cfg.target_return


class StopRule:
    """Says after each iteration whether a run is over, and restores the weights it
    should end with (module docstring).

    `validate(policy) -> (score, row)` replaces the greedy solve check when given: it
    runs every `cfg.validate_every` iterations, its rows go to `result.validation`, and
    the best score's weights and row (with iteration, steps, seconds) to `finish` and
    `result.final_eval`. Defined in chapter 2; validation in chapter 4.
    """

    def __init__(self, tasks, cfg, seed: int, result, validate: Validate | None = None):
        if validate is None and getattr(cfg, "keep", "last") == "best":
            raise ValueError(
                "keep='best' selects weights on validation: pass validate=... (a "
                "callback policy -> (score, row)) or use keep='last'"
            )
        self.tasks, self.cfg, self.seed, self.result = tasks, cfg, seed, result
        self.validate = validate
        self.start = time.perf_counter()
        self.best_weights, self.best_score = None, -math.inf

    def seconds(self) -> float:
        """Wall time since the run started."""
        return time.perf_counter() - self.start

    def done(
        self, policy, iteration: int, env_steps: int, seconds: float, mean_return: float
    ) -> bool:
        """Solved (recorded in the result) or out of budget."""
        cfg = self.cfg
        if self.validate is None:
            solved = (
                cfg.target_return is not None
                and mean_return >= cfg.eval_trigger
                and solve_check(policy, self.tasks, cfg, self.seed, self.result)
            )
        else:
            solved = (iteration + 1) % cfg.validate_every == 0 and self._validated(
                policy, iteration, env_steps, seconds
            )
        if solved:
            self.result.solved = True
            self.result.solved_at_seconds = self.seconds()
            self.result.solved_at_steps = env_steps
            return True
        return seconds >= cfg.max_seconds or (
            cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps
        )

    def _validated(self, policy, iteration: int, env_steps: int, seconds: float):
        """Score the policy, log it, remember it if best; True if it reached the
        target."""
        score, row = self.validate(policy)
        log_row(self.result.validation, iteration=iteration, env_steps=env_steps, **row)
        if score > self.best_score:
            self.best_score = score
            # the parameters the optimiser steps (of a model, or of an SSMPolicy)
            self.best_weights = [p.detach().clone() for p in policy.parameters()]
            self.result.final_eval = {
                "iteration": iteration,
                "env_steps": env_steps,
                "seconds": seconds,
                **row,
            }
        return self.cfg.target_return is not None and score >= self.cfg.target_return

    def finish(self, policy) -> None:
        """End the run with the best-validated weights if the config keeps the best."""
        if getattr(self.cfg, "keep", "last") == "best" and self.best_weights:
            with torch.no_grad():
                for param, best in zip(policy.parameters(), self.best_weights):
                    param.copy_(best)
