"""Chapter 7's memory study: four memories at equal size, three tasks, several seeds,
written run by run.

Every unit trains one `MemoryPolicy` (core x task x seed) at the task's budget and
scores it with 0 gradient steps:

* ``stateless``: meta-CartPole with no projection (stateless CartPole, memory of
  velocity), PPO over meta-episodes (`ssm_metarl.rl.meta_ppo`);
* ``flip_physics``: chapter 4's flip+physics family with chapter 4's in-context
  recipe (RL^2 inputs), scored on the family's 48 test tasks;
* ``meta_random``: Lu et al.'s meta-CartPole, a new random projection every
  meta-episode, return per trial 1 to 16, and out of distribution (projections
  training never drew, other pole lengths).

The meta-CartPole units check the policy every ``CHECK_EVERY`` steps on validation
meta-episodes and keep the best-checked weights (a run can collapse late). A unit's
card and weights go to ``ROOT/runs/NAME.{json,pth}``; a unit whose card exists is read
back, so a killed study resumes.

Two variants run on ``meta_random`` beside the main grid (`VARIANTS`, `EXTRA`):
``uncut`` trains with GAE's bootstrap running through trial ends (the discounting
pitfall), ``50k`` at about 50,000 parameters instead of 6,744. Chapter 7.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FLIP_OOD",
    "GREEDY",
    "TASKS",
    "SEEDS",
    "VARIANTS",
    "EXTRA",
    "Unit",
    "plan",
    "run_unit",
    "OOD",
    "rounded",
    "load_unit",
]

SEEDS = 5  #: training seeds per core and task
#: Each task's environment-step budget, chosen from measured throughput (16-35k
#: steps/s per core on one thread) so the whole study fits about an hour on 2 cores.
TASKS = {
    "stateless": {"steps": 1_000_000, "check_every": 250_000},
    "flip_physics": {"steps": 500_000},
    "meta_random": {"steps": 3_000_000, "check_every": 500_000},
}
VALIDATION_SEED, TEST_SEED = 70_000, 80_000  #: meta-episode seeds: checks, scores
CHECK_EPISODES, TEST_EPISODES = 32, 256
#: Out-of-distribution meta-CartPoles for the ``meta_random`` units: projections
#: training never drew, and other poles. (Random sign flips are not among them: a random
#: orthogonal map is sign-flip invariant in distribution, so they change nothing.)
OOD = {
    "gaussian projection": {"projection_kind": "gaussian"},
    "gain x2": {"projection_gain": 2 * 2**0.5},
    "pole 0.25": {"length": 0.25},
    "pole 1.0": {"length": 1.0},
}

#: What a variant changes: PPO's settings, or the parameter budget.
VARIANTS = {
    "uncut": {"ppo": {"cut_at_trials": False}},
    "50k": {"target_params": 50_000},
}
#: The variants' units: (task, core, variant), each at every seed. The diagonal SSM
#: and the LSTM led on ``meta_random`` at 6,744 parameters.
EXTRA = (
    ("meta_random", "diag_ssm", "uncut"),
    ("meta_random", "diag_ssm", "50k"),
    ("meta_random", "lstm", "50k"),
)

#: The name `memory_report` gives the test meta-episodes played with greedy actions.
GREEDY = "greedy actions"
#: Out of distribution for the ``flip_physics`` units: chapter 3's held-out set of the
#: family, 48 tasks with physics from the held-out ranges (half of them flipped).
FLIP_OOD = "held-out physics"


@dataclass(frozen=True)
class Unit:
    """One training run of chapter 7's study: a task, a core, a seed, and a variant
    (``""`` for the main grid)."""

    task: str
    core: str
    seed: int
    variant: str = ""

    @property
    def name(self) -> str:
        suffix = f"_{self.variant}" if self.variant else ""
        return f"{self.task}_{self.core}{suffix}_s{self.seed}"


def plan(cores=None, seeds: int = SEEDS, extra: bool = True) -> list[Unit]:
    """Every unit, seed by seed, so every core's runs spread over the study; then the
    variants' units, if `extra` (chapter 7)."""
    from ..models.memory import MEMORY_CORES

    main = [
        Unit(task, core, seed)
        for seed in range(seeds)
        for task in TASKS
        for core in cores or MEMORY_CORES
    ]
    variants = [
        Unit(task, core, seed, variant)
        for seed in range(seeds)
        for task, core, variant in EXTRA
        if core in (cores or MEMORY_CORES)
    ]
    return main + (variants if extra else [])


def _meta_env(task: str, **changes):
    from ..cartpole.meta_cartpole import MetaCartPoleConfig

    projection = "none" if task == "stateless" else "random"
    return MetaCartPoleConfig(projection=projection, **changes)


def _train_meta(unit: Unit, policy) -> dict:
    """PPO over meta-episodes with checks; the best-checked weights are kept."""
    import copy

    from ..rl.meta_ppo import MetaPPOConfig, evaluate_trials, train_meta_ppo

    budget, every = TASKS[unit.task]["steps"], TASKS[unit.task]["check_every"]
    env, checks, best = _meta_env(unit.task), [], {"score": -1.0}
    ppo = VARIANTS.get(unit.variant, {}).get("ppo", {})

    def check(policy, env_steps: int) -> None:
        trials = evaluate_trials(policy, env, CHECK_EPISODES, VALIDATION_SEED)
        score = float(trials.sum(1).mean())
        checks.append({"env_steps": env_steps, "validation": score})
        if score > best["score"]:
            best.update(score=score, weights=copy.deepcopy(policy.state_dict()))

    rows = train_meta_ppo(
        policy,
        env,
        MetaPPOConfig(max_env_steps=budget, **ppo),
        seed=unit.seed,
        observe=check,
        observe_every=every,
    )
    policy.load_state_dict(best["weights"])
    trials = evaluate_trials(policy, env, TEST_EPISODES, TEST_SEED)
    return {"curve": rows, "checks": checks, "test_trials": trials.tolist()}


def _more_scores(task: str, policy) -> dict:
    """A trained policy's scores beyond the test set, 0 gradient steps: for
    ``meta_random`` the test meta-episodes again with greedy actions and every `OOD`
    meta-CartPole; for ``flip_physics`` the held-out physics."""
    if task == "meta_random":
        from ..rl.meta_ppo import evaluate_trials

        test = _meta_env(task)
        return {
            "greedy_trials": evaluate_trials(
                policy, test, TEST_EPISODES, TEST_SEED, greedy=True
            ).tolist(),
            "ood_trials": {
                label: evaluate_trials(
                    policy, _meta_env(task, **change), TEST_EPISODES, TEST_SEED
                ).tolist()
                for label, change in OOD.items()
            },
        }
    if task == "flip_physics":
        from ..adapt.in_context import evaluate_in_context
        from ..cartpole.task_sets import task_sets

        tasks = list(task_sets("flip+physics")["held_out"].tasks)
        scored = evaluate_in_context(policy, tasks, 2, seed=TEST_SEED)
        return {"ood_returns": {FLIP_OOD: scored.returns.tolist()}}
    return {}


def _architecture(policy) -> dict:
    """What rebuilds the policy: `MemoryPolicy(core, input_dim, width=width,
    inputs=inputs)`, and its size."""
    return {
        "input_dim": policy.input_dim,
        "inputs": policy.inputs,
        "width": policy.width,
        "parameters": sum(p.numel() for p in policy.parameters()),
    }


def _scores_complete(card: dict) -> bool:
    """Whether `card` holds every score `_more_scores` gives its task."""
    if card["task"] == "meta_random":
        return set(OOD) <= set(card.get("ood_trials", {})) and "greedy_trials" in card
    if card["task"] == "flip_physics":
        return FLIP_OOD in card.get("ood_returns", {})
    return True


def _train_flip(unit: Unit, policy) -> dict:
    """Chapter 4's in-context recipe; scored on the family's test tasks."""
    from ..adapt.in_context import (
        InContextConfig,
        evaluate_in_context,
        train_in_context,
    )
    from ..cartpole.tasks import get_family

    cfg = InContextConfig(max_env_steps=TASKS[unit.task]["steps"], seed=unit.seed)
    result = train_in_context(policy, cfg)
    tasks = list(get_family(cfg.family).test)
    scored = evaluate_in_context(policy, tasks, 2, seed=TEST_SEED)
    return {
        "history": result.history,
        "test_returns": scored.returns.tolist(),
        "test_flipped": [bool(t.flip) for t in tasks],
    }


def run_unit(unit: Unit, root) -> dict:
    """Train and score one unit (one torch thread), or read its card back; the card.
    A card read back without all of its task's scores (greedy, out of distribution)
    gets them from its weights, with no training (chapter 7)."""
    import torch

    from ..io.atomic import save_json
    from ..models.memory import MemoryPolicy

    runs = Path(root) / "runs"
    card_path = runs / f"{unit.name}.json"
    torch.set_num_threads(1)
    if card_path.exists():
        card = json.loads(card_path.read_text())
        if not _scores_complete(card) or "width" not in card:
            # completed from the shipped weights, no training
            policy, _ = load_unit(root, unit.name)
            more = {} if _scores_complete(card) else _more_scores(card["task"], policy)
            card = rounded({**card, **_architecture(policy), **more})
            save_json(card_path, card)
        return card
    torch.manual_seed(unit.seed)
    inputs = "rl2" if unit.task == "flip_physics" else "obs"
    size = VARIANTS.get(unit.variant, {}).get("target_params", 6744)
    policy = MemoryPolicy(
        unit.core, 7, target_params=size, inputs=inputs, seed=unit.seed
    )
    start = time.perf_counter()
    train = _train_flip if unit.task == "flip_physics" else _train_meta
    measured = train(unit, policy)
    measured |= _more_scores(unit.task, policy)
    runs.mkdir(parents=True, exist_ok=True)
    torch.save(policy.state_dict(), runs / f"{unit.name}.pth")
    card = {
        "name": unit.name,
        "task": unit.task,
        "core": unit.core,
        "seed": unit.seed,
        "variant": unit.variant,
        **_architecture(policy),
        "budget_env_steps": TASKS[unit.task]["steps"],
        "seconds": time.perf_counter() - start,
        **measured,
    }
    card = rounded(card)
    save_json(card_path, card)
    return card


def rounded(value, digits: int = 4):
    """`value` with every float rounded: a trial's return is a multiple of 1/200, so
    4 digits keep the scores exact and the cards small (chapter 7)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def load_unit(root, name: str):
    """A trained unit's policy and card, from ``ROOT/runs/NAME.{json,pth}``: the
    policy is rebuilt from its card, the file inspected and read with
    ``torch.load(weights_only=True)``, and the weights checked against the model
    (keys, shapes, dtypes) before they load. Chapter 7."""
    import torch

    from ..io.checkpoint_errors import (
        DamagedCheckpointError,
        UnsafeCheckpointError,
        WrongCheckpointError,
        check_weights,
    )
    from ..io.torchfile import inspect_torch_file
    from ..models.memory import MemoryPolicy

    card_path = Path(root) / "runs" / f"{name}.json"
    if not card_path.exists():
        known = sorted(p.stem for p in card_path.parent.glob("*.json"))
        raise FileNotFoundError(f"no unit {name!r} in {card_path.parent}: {known}")
    card = json.loads(card_path.read_text())
    missing = {"task", "core", "seed", "parameters"} - set(card)
    if missing:
        raise WrongCheckpointError(f"{card_path}: the card lacks {sorted(missing)}")
    size = VARIANTS.get(card.get("variant", ""), {}).get("target_params", 6744)
    inputs = "rl2" if card["task"] == "flip_physics" else "obs"
    policy = MemoryPolicy(  # the card's width if it states one, else its budget's
        card["core"],
        card.get("input_dim", 7),
        width=card.get("width"),
        target_params=size,
        inputs=card.get("inputs", inputs),
        seed=card["seed"],
    )
    weights = card_path.with_suffix(".pth")
    problem = inspect_torch_file(weights) if weights.is_file() else ("wrong", "none")
    if problem is not None:
        kind = {"unsafe": UnsafeCheckpointError, "damaged": DamagedCheckpointError}
        error = kind.get(problem[0], WrongCheckpointError)
        raise error(f"{weights}: {problem[0]} weights file: {problem[1]}")
    found = torch.load(weights, map_location="cpu", weights_only=True)
    check_weights(found, policy.state_dict(), source=str(weights))
    policy.load_state_dict(found)
    if sum(p.numel() for p in policy.parameters()) != card["parameters"]:
        raise WrongCheckpointError(f"{weights}: not the size its card states")
    return policy.eval(), card
