"""Retention on a task sequence: adapt to task A, then to task B, and ask what is left
of A (chapter 4).

Replay (the hybrid adapter) is meant to keep what a policy learned on earlier tasks.
To measure that, the earlier task must have been learned: here the policy first adapts
to goal A with MAML's step, plays A to fill the buffer, and then adapts to goal B,
which lies on the other side of the track. Retention is the return on A after adapting
to B; the gain is the return on B. Both are reported as changes from the policy
adapted to A, for every arm:

- `start`: no step on B (the policy adapted to A);
- `standard`: k of the model's steps on B's support episodes;
- `hybrid 0.5`, `hybrid 2`: the same step plus that weight times the replay KL on A's
  episodes;
- `small step`: the standard step at a tenth of the step size (a control: moving less
  keeps more, whatever the loss).

Every arm is scored after k = 1, 2 and 3 steps, with the distance of its weights from
where they started and the replay KL: the measurement behind a hybrid collapse.
Taught in chapter 4 (`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .plan import Unit

__all__ = ["ARMS", "SEQUENCES", "STEPS_ON_B", "task_sequences", "measure_retention"]

#: The arms that step on B: (name, replay weight, step-size factor). The arm "none"
#: is the policy adapted to A, the start of every other arm.
ARMS = (
    ("standard", 0.0, 1.0),
    ("hybrid 0.5", 0.5, 1.0),
    ("hybrid 2", 2.0, 1.0),
    ("small step", 0.0, 0.1),
)
#: Sequences (A, B) per trained model.
SEQUENCES = 12
#: Steps on B after which every arm is scored. The replay KL and its gradient are zero
#: at the weights that played A's episodes, so after one step the hybrid arms equal the
#: standard one; replay acts from the second step on.
STEPS_ON_B = (1, 2, 3)


def task_sequences(family: str = "goal_sharp", n: int = SEQUENCES) -> list[tuple]:
    """`n` pairs (A, B) of test tasks whose goals lie on opposite sides of the track,
    at least 1 m apart (seeded, the same for every model). Chapter 4."""
    from ..cartpole.task_sets import task_sets

    tasks = task_sets(family)["test"].tasks
    goals = np.array([t.goal for t in tasks])
    rng = np.random.default_rng(8_001)
    pairs = [
        (i, j)
        for i in range(len(tasks))
        for j in range(len(tasks))
        if goals[i] * goals[j] < 0 and abs(goals[i] - goals[j]) >= 1.0
    ]
    picked = rng.choice(len(pairs), size=n, replace=False)
    return [(tasks[pairs[p][0]], tasks[pairs[p][1]]) for p in picked]


def _score(model, task, seed: int) -> float:
    from .measure import per_task_returns

    return float(per_task_returns(model, [task], 10, seed=seed)[0])


def _distance(model, start) -> float:
    return float(
        sum(
            (p.detach() - q.detach()).pow(2).sum()
            for p, q in zip(model.parameters(), start.parameters())
        )
        ** 0.5
    )


def _sequence(model, lr: float, a, b, seed: int) -> dict:
    """One sequence A -> B for one model: every arm's return on A and on B."""
    from ..adapt.adapters import (
        HybridAdaptationConfig,
        HybridAdapter,
        StandardAdaptationConfig,
        StandardAdapter,
        replay_kl,
    )
    from ..adapt.buffer import ExperienceBuffer
    from ..cartpole.rollout import collect
    from ..models.policy import SSMPolicy

    learn_a = StandardAdapter(model, StandardAdaptationConfig(lr=lr, steps=1))
    on_a = learn_a.adapt(collect(model, [a], 10, seed=seed))
    buffer = ExperienceBuffer(capacity=64, seed=seed)
    buffer.add(collect(on_a, [a], 10, seed=seed + 1))
    replay = buffer.sample(10, seed=seed)
    support_b = collect(on_a, [b], 10, seed=seed + 2)
    row = {"start": {"A": _score(on_a, a, seed + 3), "B": _score(on_a, b, seed + 4)}}
    for name, weight, factor in ARMS:
        for k in STEPS_ON_B:
            config = HybridAdaptationConfig(
                lr=lr * factor, steps=k, experience_weight=weight, replay_episodes=10
            )
            adapted = HybridAdapter(on_a, config, buffer).adapt(support_b)
            params = {n: p.detach().unsqueeze(0) for n, p in adapted.named_parameters()}
            row[f"{name} x{k}"] = {
                "A": _score(adapted, a, seed + 3),
                "B": _score(adapted, b, seed + 4),
                "distance": _distance(adapted, on_a),
                "replay_kl": float(replay_kl(SSMPolicy(on_a), params, replay)[0]),
            }
    return row


def measure_retention(unit: Unit, root) -> dict:
    """Every sequence for one trained model (its adaptation step size from its card);
    cached in `root/measurements/retention_NAME.json`. Chapter 4."""
    import torch

    from ..io.atomic import save_json
    from ..models.ssm import StateSpaceModel

    path = Path(root) / "measurements" / f"retention_{Path(unit.name).name}.json"
    if path.exists():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    card = json.loads(unit.path(root).with_suffix(".json").read_text())
    model = StateSpaceModel.load(unit.path(root))
    rows = [
        {"A": a.goal, "B": b.goal, **_sequence(model, card["adaptation_lr"], a, b, s)}
        for s, (a, b) in zip(range(90_000, 10**6, 10), task_sequences(unit.family))
    ]
    result = {"unit": unit.to_dict(), "lr": card["adaptation_lr"], "sequences": rows}
    save_json(path, result)
    return result
