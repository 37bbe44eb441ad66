"""Chapter 6's peers run: every peer trained ``SEEDS`` times, interleaved seed by
seed in one run, and written run by run.

Three comparisons share the run (:mod:`~ssm_metarl.bench.peer_runs` trains each):

* ``cartpole``: our PPO, SB3 PPO and SB3 DQN on CartPole-v1, checked on one grid;
* ``held_out``: SB3 PPO and DQN from scratch on held-out ``goal_sharp`` tasks, at the
  environment steps MAML's one adaptation step reads (``SUPPORT_STEPS``) and at 10x
  and 100x those;
* ``memory``: SB3-contrib's recurrent PPO and chapter 4's in-context recipe on
  flip+physics at equal environment steps (``MEMORY_STEPS``), scored with 0 gradient
  steps, beside the shipped in-context models.

``plan`` lists the calls in run order, ``run_peers_study`` runs them in worker
processes (a run written before is read back, so a killed run resumes) and
``gather`` collects the runs with the run's card. Needs the ``bench`` extra.
Chapter 6.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = [
    "SEEDS",
    "CARTPOLE_AGENTS",
    "CARTPOLE_STEPS",
    "SUPPORT_STEPS",
    "MULTIPLES",
    "HELD_OUT_TASKS",
    "MEMORY_STEPS",
    "plan",
    "run_call",
    "run_peers_study",
    "gather",
]

SEEDS = 10  #: training seeds of every peer
CARTPOLE_AGENTS = ("our_ppo", "sb3_ppo", "sb3_dqn")
CARTPOLE_STEPS = 50_000  #: every CartPole-v1 agent's budget (RL Zoo's DQN budget)
#: env steps of MAML's 10 support episodes on goal_sharp (the results store's
#: ``from_scratch.support_steps``, rounded)
SUPPORT_STEPS = 1_967
MULTIPLES = (1, 10, 100)
#: held-out goal_sharp tasks that DQN also gets 100x on (its slowest setting)
DQN_FULL_TASKS = 3
HELD_OUT_TASKS = SEEDS  #: one held-out task per seed
MEMORY_STEPS = 50_000  #: env steps of each memory learner on flip+physics
MEMORY_AGENTS = ("sb3_recurrent_ppo", "in_context_best", "in_context_last")


def _name(kind: str, agent: str, seed: int, budget: int | None = None) -> str:
    return f"{kind}_{agent}_seed{seed}" + ("" if budget is None else f"_{budget}")


def plan() -> list[tuple]:
    """Every call of the run, `(name, kind, agent, seed, budget)`, seed by seed so that
    every agent's runs spread over the whole run. Chapter 6."""
    calls = []
    for seed in range(SEEDS):
        for agent in CARTPOLE_AGENTS:
            calls.append(
                (
                    _name("cartpole", agent, seed),
                    "cartpole",
                    agent,
                    seed,
                    CARTPOLE_STEPS,
                )
            )
        for agent in MEMORY_AGENTS:
            calls.append(
                (_name("memory", agent, seed), "memory", agent, seed, MEMORY_STEPS)
            )
        for algo in ("ppo", "dqn"):
            for m in MULTIPLES:
                if algo == "dqn" and m == 100 and seed >= DQN_FULL_TASKS:
                    continue
                budget = SUPPORT_STEPS * m
                calls.append(
                    (
                        _name("held_out", algo, seed, budget),
                        "held_out",
                        algo,
                        seed,
                        budget,
                    )
                )
    return calls


def run_call(root: str, name: str, kind: str, agent: str, seed: int, budget: int):
    """Run one call of `plan` and write ``root/runs/NAME.json``; read it back if it is
    there. Chapter 6."""
    from ..cartpole.task_sets import task_sets
    from ..io.atomic import save_json
    from ..meta.evaluation import TEST_SEED
    from .peer_runs import cartpole_run, memory_run, task_run

    path = Path(root) / "runs" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    start = time.perf_counter()
    if kind == "cartpole":
        result = cartpole_run(agent, seed, budget)
    elif kind == "held_out":
        task = task_sets("goal_sharp")["held_out"].tasks[seed]
        result = {**task_run(agent, task, budget, seed, TEST_SEED), "task": seed}
    else:
        tasks = task_sets("flip+physics")["test"].tasks
        result = memory_run(agent, seed, budget, tasks, TEST_SEED + 1)
    result.update(
        name=name, kind=kind, wall_seconds=round(time.perf_counter() - start, 2)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(path, result)
    return result


def _shipped_in_context(root: str) -> list[dict]:
    """The shipped in-context models (chapter 3's replication) through the same
    scoring."""
    import torch

    from ..cartpole.task_sets import task_sets
    from ..io.artifacts import models_dir
    from ..meta.evaluation import TEST_SEED
    from ..models.ssm import StateSpaceModel
    from .play import OurAgent, play

    torch.set_num_threads(1)
    tasks = task_sets("flip+physics")["test"].tasks
    out = []
    for path in sorted((models_dir() / "replication").glob("*incontext*.pth")):
        card = json.loads(path.with_suffix(".json").read_text())
        returns = play(OurAgent(StateSpaceModel.load(path)), tasks, 5, TEST_SEED + 1)
        out.append(
            {
                "agent": "in_context_shipped",
                "model": path.stem,
                "env_steps": card["env_steps"],
                "returns": returns.mean(1).tolist(),
            }
        )
    return out


def run_peers_study(root, workers: int = 2, command: str = "") -> dict:
    """Run every call of `plan` in `workers` processes and write ``root/peers.json``
    (the runs and the run's card). Chapter 6."""
    import platform

    import torch

    from ..io.atomic import save_json
    from ..protocol.runner import in_processes

    start = time.perf_counter()
    root = str(root)
    calls = plan()
    done = [c[0] for c in calls if (Path(root) / "runs" / f"{c[0]}.json").exists()]
    runs = in_processes([(run_call, root, *call) for call in calls], workers)
    shipped = _shipped_in_context(root)
    card = {
        "command": command,
        "workers": workers,
        "threads_per_worker": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "libraries": _versions(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        # a resumed run's wall time counts only its last part: the runs' own sum, and
        # how many runs an earlier invocation had already written
        "run_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
        "runs_read_back": len(done),
    }
    result = {"card": card, "runs": runs, "in_context_shipped": shipped}
    save_json(Path(root) / "peers.json", result)
    return result


def _versions() -> dict:
    from importlib.metadata import version

    return {
        name: version(name)
        for name in ("stable-baselines3", "sb3-contrib", "gymnasium")
    }


def gather(root) -> dict:
    """The shipped peers run: ``root/peers.json``. Chapter 6."""
    return json.loads((Path(root) / "peers.json").read_text())
