"""Chapter 6's agent benchmark: the seed card's own protocol, and the strong protocol on
held-out tasks.

``card_protocol`` replays the card's setting row by row (CartPole-v1, 20 greedy
episodes, its three adaptation configs) on the shipped models. ``strong_protocol``
scores every agent on the 48 held-out tasks of the ``goal`` family over several
evaluation seeds, with 95% CIs, beside PPO trained from scratch on the same tasks.
Nothing is retrained except that PPO: each agent keeps the budget its card records, and
the results say so. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..adapt.adapters import (
    ExperienceBuffer,
    HybridAdaptationConfig,
    HybridAdapter,
    StandardAdaptationConfig,
    StandardAdapter,
)
from ..cartpole.rollout import collect
from ..cartpole.tasks import CartPoleTask, get_family
from ..io.artifacts import artifact_path, load_card
from ..meta.evaluation import TEST_SEED, held_out_tasks
from ..models.ssm import StateSpaceModel
from ..report.progress import progress_bar
from ..report.stats import bootstrap_ci
from ..rl.loops import PPOConfig, train_ppo

__all__ = [
    "CARD_MODEL",
    "CARD_CONFIGS",
    "CARD_REPORTED",
    "card_protocol",
    "strong_protocol",
    "random_model",
    "iqm",
    "iqm_ci",
    "probability_of_improvement",
    "our_ppo_cartpole",
]

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


def random_model() -> StateSpaceModel:
    """The card's SSM with every weight zero: equal logits, so sampled actions are
    uniform (chapter 6)."""
    model = StateSpaceModel(32, 4, 4, 64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def _row(name: str, returns, reported: str = "–", **extra) -> dict:
    returns = np.asarray(returns, dtype=np.float64).ravel()
    return {
        "name": name,
        "reported": reported,
        "returns": returns.tolist(),
        "std": {
            "mean": float(returns.mean()),
            "std": float(returns.std(ddof=1)) if returns.size > 1 else 0.0,
        },
        "ci": bootstrap_ci(returns).to_dict(),
        **extra,
    }


def _play(model_or_policy, tasks, episodes: int, seed: int, greedy: bool) -> np.ndarray:
    """Per-task mean return over `episodes` episodes: (len(tasks),)."""
    traj = collect(model_or_policy, tasks, episodes, seed=seed, greedy=greedy)
    return traj.returns.double().numpy().reshape(len(tasks), episodes).mean(1)


def _episodes(
    model_or_policy, task, episodes: int, seed: int, greedy: bool
) -> np.ndarray:
    return (
        collect(model_or_policy, [task], episodes, seed=seed, greedy=greedy)
        .returns.double()
        .numpy()
    )


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
        _row(
            "random policy",
            _episodes(random_model(), task, episodes, seed, greedy=False),
            CARD_REPORTED["random"],
        ),
        _row(
            "this model, no adaptation",
            _episodes(model, task, episodes, seed, True),
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
            _row(
                f"standard, {steps} steps at {lr:g}",
                _episodes(standard, task, episodes, seed, True),
                CARD_REPORTED["standard"],
                config=[steps, lr],
            )
        )
        rows.append(
            _row(
                f"hybrid, {steps} steps at {lr:g}",
                _episodes(hybrid, task, episodes, seed, True),
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
                _row(
                    f"RSI, {cycles} cycles",
                    _episodes(m, task, episodes, seed, True),
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


def _ppo_from_scratch(task: CartPoleTask, budget: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = StateSpaceModel(32, 4, 4, 64)
    cfg = PPOConfig(
        max_env_steps=budget, target_return=None, max_seconds=120.0, max_iters=10_000
    )
    result = train_ppo(model, [task], cfg, seed=seed)
    h = result.history
    return {
        "curve_steps": list(h["env_steps"]),
        "curve_returns": [float(r) for r in h["mean_return"]],
        "model": model,
        "seconds": float(h["seconds"][-1]),
    }


def strong_protocol(
    seeds: int = 3,
    seed: int = 0,
    family: str = "goal",
    n_tasks: int = 48,
    episodes: int = 10,
    ppo_tasks: int = 4,
    ppo_budget: int = 10_000,
    progress: bool = False,
) -> dict:
    """Every agent on `n_tasks` held-out tasks of `family`, `seeds` evaluation seeds,
    95% CIs (chapter 6).

    Scores are per-task mean returns of `episodes` sampled episodes, averaged over
    seeds; adapted agents take one step on `episodes` support episodes (chapter 3's
    protocol). PPO from scratch trains a fresh SSM on each of the first `ppo_tasks`
    tasks for `ppo_budget` env steps per seed.
    """
    fam = get_family(family)
    tasks = held_out_tasks(fam, n_tasks)
    names = {
        "maml": f"cartpole_{family}_maml",
        "multitask": f"cartpole_{family}_multitask",
        "rsi": f"rsi_{family}_maml",
    }
    models = {
        k: StateSpaceModel.load(artifact_path(v + ".pth")) for k, v in names.items()
    }
    cards = {k: load_card(v) for k, v in names.items()}
    lrs = {k: float(cards[k].get("adaptation_lr") or 0.01) for k in names}
    buffer = ExperienceBuffer(capacity=256, seed=seed)
    buffer.add(collect(models["maml"], list(fam.train)[:32], 2, seed=seed + 7))
    scores: dict[str, list] = {}
    support_steps = []
    for s in progress_bar(range(seeds), enabled=progress, desc="strong protocol seeds"):
        base_seed = TEST_SEED + 1000 * (seed + s)
        add = lambda name, x: scores.setdefault(name, []).append(np.asarray(x))
        add("random", _play(random_model(), tasks, episodes, base_seed + 1, False))
        for key, label in (
            ("multitask", "multi-task"),
            ("maml", "MAML"),
            ("rsi", "RSI (shipped run)"),
        ):
            add(
                f"{label}, no adaptation",
                _play(models[key], tasks, episodes, base_seed + 1, False),
            )
            support = collect(models[key], tasks, episodes, seed=base_seed)
            support_steps.append(
                float(support.lengths.double().reshape(n_tasks, episodes).sum(1).mean())
            )
            cfg = StandardAdaptationConfig(lr=lrs[key], steps=1)
            add(
                f"{label}, standard 1 step",
                _play(
                    StandardAdapter(models[key], cfg).adapt_tasks(support),
                    tasks,
                    episodes,
                    base_seed + 1,
                    False,
                ),
            )
            # replay's KL has zero gradient at the start: hybrid differs from the 2nd
            # step on
            if key == "maml":
                for steps in (1, 3):
                    hcfg = HybridAdaptationConfig(
                        lr=lrs[key], steps=steps, experience_weight=0.5
                    )
                    hybrid = HybridAdapter(models[key], hcfg, buffer).adapt_tasks(
                        support
                    )
                    add(
                        f"{label}, hybrid {steps} step{'s' * (steps > 1)}",
                        _play(hybrid, tasks, episodes, base_seed + 1, False),
                    )
                cfg = StandardAdaptationConfig(lr=lrs[key], steps=3)
                add(
                    f"{label}, standard 3 steps",
                    _play(
                        StandardAdapter(models[key], cfg).adapt_tasks(support),
                        tasks,
                        episodes,
                        base_seed + 1,
                        False,
                    ),
                )
    runs = []
    for s in range(seeds):
        for i, task in enumerate(tasks[:ppo_tasks]):
            run = _ppo_from_scratch(task, ppo_budget, seed + 100 * s + i)
            final = _play(
                run.pop("model"),
                [task],
                episodes,
                TEST_SEED + 1000 * (seed + s) + 1,
                False,
            )[0]
            runs.append(
                {
                    "algorithm": "ppo_from_scratch",
                    "label": "our PPO from scratch, one goal task",
                    "seed": s,
                    "task": i,
                    "final_return": float(final),
                    **run,
                }
            )
    steps = float(np.mean(support_steps))
    rows = []
    for name, per_seed in scores.items():
        matrix = np.stack(per_seed)  # (seeds, tasks)
        adapted = " step" in name
        rows.append(
            {
                **_row(name, matrix.mean(0)),
                "per_seed": matrix.tolist(),
                "adapted": adapted,
                "env_steps": round(steps) if adapted else 0,
            }
        )
    other = _in_context_rows(seeds, seed, n_tasks)
    ppo = np.array([r["final_return"] for r in runs]).reshape(seeds, ppo_tasks)
    rows.append(
        {
            **_row(
                f"PPO from scratch ({ppo_budget:,} steps, first {ppo_tasks} tasks)",
                ppo.mean(0),
            ),
            "per_seed": ppo.tolist(),
            "adapted": False,
            "env_steps": ppo_budget,
        }
    )
    rows += other
    budgets = {
        k: {
            "artifact": names[k],
            "train_seconds": cards[k].get("train_seconds")
            or cards[k].get("wall_seconds"),
            "env_steps": cards[k].get("env_steps"),
            "adaptation_lr": lrs[k],
            "outer_lr": (cards[k].get("train_config") or {}).get("outer_lr"),
        }
        for k in names
    }
    return {
        "what": (
            f"{n_tasks} held-out '{family}' tasks, {seeds} evaluation seeds, "
            f"{episodes} sampled episodes "
            "per task; CI over tasks"
        ),
        "family": family,
        "seeds": seeds,
        "n_tasks": n_tasks,
        "rows": rows,
        "runs": runs,
        "budgets": budgets,
        "support_env_steps": steps,
    }


def our_ppo_cartpole(seeds=range(5)) -> dict:
    """Chapter 2's PPO on the card's SSM, CartPole-v1, solved = greedy mean >= 475 over
    100 real episodes.

    The same solve check as the SB3 peers; the clock includes every evaluation.
    Chapter 6.
    """
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = StateSpaceModel(32, 4, 4, 64)
        result = train_ppo(
            model, [CartPoleTask()], PPOConfig(max_seconds=60.0), seed=seed
        )
        h = result.history
        runs.append(
            {
                "algorithm": "our_ppo",
                "label": "our PPO (card's SSM)",
                "seed": seed,
                "solved": result.solved,
                "solved_at_steps": result.solved_at_steps,
                "solved_at_seconds": result.solved_at_seconds,
                "curve_steps": list(h["env_steps"]),
                "curve_returns": [float(r) for r in h["mean_return"]],
                "final_mean": (result.final_eval or {}).get("mean"),
            }
        )
    solved = [r for r in runs if r["solved"]]
    summary = {
        "seeds": len(runs),
        "solved": len(solved),
        "median_solve_steps": float(np.median([r["solved_at_steps"] for r in solved]))
        if solved
        else None,
        "median_solve_seconds": float(
            np.median([r["solved_at_seconds"] for r in solved])
        )
        if solved
        else None,
    }
    return {
        "what": "PPOConfig() defaults, 60 s budget, one torch thread",
        "summary": summary,
        "runs": runs,
    }


def _in_context_rows(seeds: int, seed: int, n_tasks: int) -> list[dict]:
    """Chapter 4's in-context policy on its own family's held-out tasks (another family:
    its own rows)."""
    try:
        model = StateSpaceModel.load(artifact_path("cartpole_flip_incontext.pth"))
    except (FileNotFoundError, ValueError):
        # not shipped: the row is left out, and the JSON's rows say which agents ran
        return []
    tasks = held_out_tasks(get_family("flip+physics"), n_tasks)
    scores = np.stack(
        [
            _play(model, tasks, 5, TEST_SEED + 1000 * (seed + s) + 1, True)
            for s in range(seeds)
        ]
    )
    return [
        {
            **_row("in-context, no gradient step (flip+physics tasks)", scores.mean(0)),
            "per_seed": scores.tolist(),
            "adapted": False,
            "env_steps": 0,
            "family": "flip+physics",
        }
    ]


def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (Agarwal et al.
    2021). Chapter 6."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    return float(x[n // 4 : n - n // 4].mean()) if n >= 4 else float(x.mean())


def _stratified(matrix: np.ndarray, rng) -> np.ndarray:
    """Resample the runs (rows) within each task (column) independently: rliable's
    stratified bootstrap."""
    runs, tasks = matrix.shape
    idx = rng.integers(0, runs, size=(runs, tasks))
    return matrix[idx, np.arange(tasks)]


def iqm_ci(matrix, n_resamples: int = 2000, seed: int = 0) -> dict:
    """IQM of a (runs, tasks) score matrix with a 95% stratified-bootstrap CI.
    Chapter 6."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = [iqm(_stratified(matrix, rng)) for _ in range(n_resamples)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "mean": iqm(matrix),
        "low": float(low),
        "high": float(high),
        "n": int(matrix.size),
    }


def probability_of_improvement(x, y, n_resamples: int = 2000, seed: int = 0) -> dict:
    """P(X > Y) (ties count half), averaged over tasks, with a 95% stratified-bootstrap
    CI. Chapter 6.

    `x`, `y`: (runs, tasks) matrices of two agents on the same tasks.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def p(a, b):
        diff = a[:, None, :] - b[None, :, :]
        return float(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1)).mean())

    rng = np.random.default_rng(seed)
    boot = [p(_stratified(x, rng), _stratified(y, rng)) for _ in range(n_resamples)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "mean": p(x, y),
        "low": float(low),
        "high": float(high),
        "n": int(x.shape[1]),
    }
