"""The same-compute baseline: what the loop's compute buys without the loop.

A self-improvement run spends environment steps on every candidate it trains, kept or
not. `same_compute_baseline` spends exactly as many on plain continued training of the
run's starting model, with the hyperparameters that model was trained with, through
the same training function as a candidate (`train_candidate`), and keeps the last
weights. `rsi-baseline` ships the result with a card. Chapter 5
(`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..cartpole.tasks import get_family
from ..io.artifacts import artifact_path, load_card
from ..meta.evaluation import TEST_SEED, test_tasks
from ..models.ssm import StateSpaceModel
from ..report.stats import bootstrap_ci
from .search import Candidate, RSIConfig, score, train_candidate, validation_tasks

__all__ = [
    "spent_env_steps",
    "start_hyperparameters",
    "same_compute_baseline",
    "test_returns",
]


def spent_env_steps(history: list[dict]) -> int:
    """Training environment steps of every candidate of a run (accepted, rejected or
    unsafe), from its history (chapter 5)."""
    return sum(
        int((c.get("train") or {}).get("env_steps", 0))
        for cycle in history
        for c in cycle["candidates"]
    )


def start_hyperparameters(card: dict) -> dict:
    """The proposal that repeats how a model was trained: its step sizes, clip and
    tasks per outer step from its card, and no growth (chapter 5)."""
    train = card.get("train_config")
    if not train:
        raise ValueError(
            f"{card.get('name', 'the start model')}'s card has no train_config: the "
            "baseline repeats the start's own training, so it needs a trained model"
        )
    return {
        "inner_lr": float(train["inner_lr"]),
        "outer_lr": float(train["outer_lr"]),
        "max_grad_norm": float(train["max_grad_norm"]),
        "tasks_per_epoch": int(train["tasks_per_epoch"]),
        "grow_state": 0,
        "grow_hidden": 0,
    }


def test_returns(candidate: Candidate, config: RSIConfig) -> np.ndarray:
    """Per-task return after one adaptation step on the family's test tasks, with the
    seed every test score of chapter 5 uses (`agent.evaluate(split="test")`)."""
    tasks = test_tasks(get_family(config.family), config.test_tasks)
    return score(candidate, tasks, config, TEST_SEED)


def same_compute_baseline(run_card: dict, seed: int) -> tuple[Candidate, dict]:
    """Continue training a run's starting model for as many environment steps as all
    of the run's candidates used, with the start's own hyperparameters; returns the
    final model and what was measured (chapter 5)."""
    name = Path(run_card["initial_model"]).stem
    start = StateSpaceModel.load(artifact_path(name + ".pth"))
    params = start_hyperparameters(load_card(name))
    budget = spent_env_steps(run_card["history"])
    rsi = run_card["rsi_config"]
    config = RSIConfig(
        **{
            **rsi,
            "max_env_steps": max(1, budget),
            "train_epochs": 10**9,
            "max_train_seconds": 1e9,  # no time cap: the budget is the steps
            "seed": seed,
        }
    )
    clock = time.perf_counter()
    trained, info = train_candidate(
        Candidate(start, run_card["initial_inner_lr"]), params, config, seed
    )
    tested = test_returns(trained, config)
    validation = score(
        trained, validation_tasks(config.family, config.validation_tasks), config, 0
    )
    return trained, {
        "budget_env_steps": budget,
        "train": info,
        "params": params,
        "test_returns": tested.tolist(),
        "test": bootstrap_ci(tested).to_dict(),
        "validation": bootstrap_ci(validation).to_dict(),
        "seconds": time.perf_counter() - clock,
    }
