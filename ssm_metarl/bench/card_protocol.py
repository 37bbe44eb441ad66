"""Chapter 6's card protocol: every row of the seed card's tables re-measured under its
own setting.

``card_protocol`` replays the card's setting row by row (CartPole-v1, 20 greedy
episodes, its three adaptation configs) on the shipped models, beside the values the
card reported (``CARD_REPORTED``). Nothing is retrained. The strong protocol on test
tasks is :mod:`ssm_metarl.bench.strong_protocol`. Taught in chapter 6
(``06_benchmarks``).
"""

from __future__ import annotations

import torch

from ..adapt.adapters import (
    HybridAdaptationConfig,
    HybridAdapter,
    StandardAdaptationConfig,
    StandardAdapter,
)
from ..adapt.buffer import ExperienceBuffer
from ..cartpole.rollout import collect
from ..cartpole.tasks import CartPoleTask
from ..io.artifacts import artifact_path, load_card
from ..models.ssm import StateSpaceModel
from ..report.progress import progress_bar
from .scoring import episode_returns, random_model, score_row

__all__ = ["CARD_MODEL", "CARD_CONFIGS", "CARD_REPORTED", "card_protocol"]

#: The card's model: ``cartpole_hybrid_real_model`` is an alias of this shipped
#: artifact.
CARD_MODEL = "cartpole_goal_maml"
#: The card's adaptation configs: (steps, step size).
CARD_CONFIGS = ((5, 0.01), (10, 0.01), (10, 0.001))
#: The seed card's reported values, as printed there (MODEL_DOCUMENTATION.md).
CARD_REPORTED = {
    "random": "20-30",
    "base": "9.4 ± 0.7",
    "standard": "13.5 ± 1.8",
    "hybrid": "37.8 ± 17.1",
    "rsi_0": "10.0",
    "rsi_1": "22.0",
    "rsi_3": "74.3",
    "dqn": "200-500",
    "ppo": "200-500",
    "parameters": "6,744",
    "training_time": "47 min",
    "convergence": "8.2 → 11.5",
}


def _rsi_model_after(card: dict, cycles: int) -> str | None:
    """The shipped RSI run's model after `cycles` cycles when no cycle up to then
    accepted a change."""
    if any(h.get("accepted") is not None for h in card["history"][:cycles]):
        return None
    return card["initial_model"].removesuffix(".pth")


def card_protocol(
    episodes: int = 20,
    support_episodes: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Every row of the seed card's tables under its own protocol: CartPole-v1,
    `episodes` greedy episodes.

    Adaptation: the card's three configs, each on `support_episodes` sampled episodes of
    the unadapted model; hybrid adds replay (weight 0.5) of the model's own episodes.
    Chapter 6.
    """
    torch.manual_seed(seed)
    task, model = (
        CartPoleTask(),
        StateSpaceModel.load(artifact_path(CARD_MODEL + ".pth")),
    )
    card = load_card(CARD_MODEL)
    rows = [
        score_row(
            "random policy",
            episode_returns(random_model(), task, episodes, seed, greedy=False),
            CARD_REPORTED["random"],
        ),
        score_row(
            "this model, no adaptation",
            episode_returns(model, task, episodes, seed, True),
            CARD_REPORTED["base"],
        ),
    ]
    support = collect(model, [task], support_episodes, seed=seed + 1)
    buffer = ExperienceBuffer(capacity=256, seed=seed)
    buffer.add(collect(model, [task], 16, seed=seed + 2))
    configs = list(CARD_CONFIGS)
    for steps, lr in progress_bar(configs, enabled=progress, desc="card adaptation"):
        standard = StandardAdapter(
            model, StandardAdaptationConfig(lr=lr, steps=steps)
        ).adapt(support)
        hybrid = HybridAdapter(
            model,
            HybridAdaptationConfig(lr=lr, steps=steps, experience_weight=0.5),
            buffer,
        ).adapt(support)
        rows.append(
            score_row(
                f"standard, {steps} steps at {lr:g}",
                episode_returns(standard, task, episodes, seed, True),
                CARD_REPORTED["standard"],
                config=[steps, lr],
            )
        )
        rows.append(
            score_row(
                f"hybrid, {steps} steps at {lr:g}",
                episode_returns(hybrid, task, episodes, seed, True),
                CARD_REPORTED["hybrid"],
                config=[steps, lr],
            )
        )
    rsi = load_card("rsi_goal_maml")
    for cycles in (0, 1, 3):
        start = _rsi_model_after(rsi, cycles)
        if start is not None:
            m = StateSpaceModel.load(artifact_path(start + ".pth"))
            rows.append(
                score_row(
                    f"RSI, {cycles} cycles",
                    episode_returns(m, task, episodes, seed, True),
                    CARD_REPORTED[f"rsi_{cycles}"],
                    note="no cycle accepted a change: the start model",
                )
            )
    log = card["log"]
    return {
        "what": (
            f"CartPole-v1, {episodes} greedy episodes of {CARD_MODEL} (the card's "
            "model), adaptation on "
            f"{support_episodes} sampled episodes"
        ),
        "model": CARD_MODEL,
        "episodes": episodes,
        "configs": [list(c) for c in CARD_CONFIGS],
        "rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "train_seconds": card["train_seconds"],
            "env_steps": card["env_steps"],
            "family": card["train_config"]["family"],
            "epochs_run": card["epochs_run"],
            "first_epoch_return": log["pre_return"][0],
            "last_epoch_return": log["pre_return"][-1],
        },
    }
