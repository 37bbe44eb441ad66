"""The training runs of chapter 6's peers run, one function a run.

``cartpole_run`` trains one agent (our PPO on the card's SSM, SB3's PPO or DQN with RL
Zoo's settings) on CartPole-v1 and checks it on one grid: every ``GRID`` environment
steps, the greedy mean of the same ``SOLVE_EPISODES`` Gymnasium episodes; solved is
the first grid point at >= 475. Evaluation is timed apart from training.
``task_run`` trains SB3's PPO or DQN from scratch on one held-out task;
``memory_run`` trains a memory learner (SB3-contrib's recurrent PPO with RL Zoo's
CartPoleNoVel settings, or chapter 4's in-context recipe) on flip+physics for a
budget of environment steps and scores it with 0 gradient steps. Every score goes
through :func:`~ssm_metarl.bench.play.play`. Needs the ``bench`` extra. Chapter 6.
"""

from __future__ import annotations

import math
import time

import torch

from ..cartpole.tasks import CartPoleTask
from .peers import ZOO, _lin, sb3_model
from .play import OurAgent, SB3Agent, play

__all__ = [
    "GRID",
    "SOLVE_EPISODES",
    "TARGET",
    "EVAL_SEED",
    "RPPO_ZOO",
    "cartpole_run",
    "task_run",
    "memory_run",
]

GRID = 1_000  #: env steps between two checks of every CartPole-v1 agent
SOLVE_EPISODES = 20  #: greedy episodes of each check (the same ones for every agent)
TARGET = 475.0  #: CartPole-v1's solved threshold
EVAL_SEED = 50_000  #: seed of the checks' episodes (never a training seed)
#: RL Zoo's RecurrentPPO settings for CartPoleNoVel-v1 (hyperparams/ppo_lstm.yml at
#: commit 22e3ff2), read and restated; ``normalize`` is its VecNormalize.
RPPO_ZOO = {
    "n_envs": 8,
    "n_timesteps": 100_000,
    "normalize": True,
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": "lin_0.001",
    "clip_range": "lin_0.2",
    "policy_kwargs": {
        "ortho_init": False,
        "activation_fn": "ReLU",
        "lstm_hidden_size": 64,
        "enable_critic_lstm": True,
        "net_arch": {"pi": [64], "vf": [64]},
    },
}


class _Grid:
    """The checks of one run: greedy means on the grid, training seconds without the
    checks' own time."""

    def __init__(self, budget: int):
        self.points = list(range(0, budget + 1, GRID))
        self.steps, self.returns, self.seconds = [], [], []
        self.start, self.eval_seconds = time.perf_counter(), 0.0

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds

    def score(self, agent) -> float:
        t = time.perf_counter()
        # the episodes side by side: one batched action per step for all of them
        value = float(play(agent, [None] * SOLVE_EPISODES, 1, EVAL_SEED).mean())
        self.eval_seconds += time.perf_counter() - t
        return value

    def due(self, env_steps: int) -> list[int]:
        """Grid points at or below `env_steps` not yet checked."""
        return [p for p in self.points[len(self.steps) :] if p <= env_steps]

    def record(self, points, value: float, seconds) -> None:
        for p, s in zip(points, seconds):
            self.steps.append(p)
            self.returns.append(value)
            self.seconds.append(round(s, 3))

    def result(self) -> dict:
        hit = [i for i, r in enumerate(self.returns) if r >= TARGET]
        return {
            "grid_steps": self.steps,
            "grid_returns": self.returns,
            "grid_seconds": self.seconds,
            "solved": bool(hit),
            "solved_at_steps": self.steps[hit[0]] if hit else None,
            "solved_at_seconds": self.seconds[hit[0]] if hit else None,
            "eval_seconds": round(self.eval_seconds, 2),
        }


def _ours_on_grid(seed: int, budget: int, grid: _Grid):
    """Our PPO: the weights after each update serve every grid point until the next
    update; a point's seconds are interpolated between the two updates' times."""
    from ..models.ssm import StateSpaceModel
    from ..rl.configs import PPOConfig
    from ..rl.loops import train_ppo

    torch.manual_seed(seed)
    model = StateSpaceModel(32, 4, 4, 64)
    snapshot = lambda: [w.detach().clone() for w in model.parameters()]
    pending = {"steps": 0, "seconds": 0.0, "weights": snapshot()}

    def resolve(points: list[int], upto: int, seconds_now: float) -> None:
        """Score the pending weights on `points` (they served every step to `upto`)."""
        if not points:
            return
        live = snapshot()
        with torch.no_grad():
            for w, p in zip(model.parameters(), pending["weights"]):
                w.copy_(p)
            value = grid.score(OurAgent(model, greedy=True))
            for w, p in zip(model.parameters(), live):
                w.copy_(p)
        s0, t0 = pending["steps"], pending["seconds"]
        span = max(upto - s0, 1)
        grid.record(
            points, value, [t0 + (p - s0) / span * (seconds_now - t0) for p in points]
        )

    def observe(policy, env_steps: int) -> None:
        now = grid.train_seconds()
        resolve([p for p in grid.due(env_steps) if p < env_steps], env_steps, now)
        pending.update(steps=env_steps, seconds=now, weights=snapshot())

    cfg = PPOConfig(
        max_env_steps=budget,
        target_return=None,
        max_seconds=math.inf,
        max_iters=10**6,
    )
    train_ppo(model, [CartPoleTask()], cfg, seed=seed, observe=observe)
    resolve(grid.due(budget), budget, pending["seconds"])
    return OurAgent(model, greedy=True)


def _sb3_on_grid(algo: str, seed: int, budget: int, grid: _Grid):
    from stable_baselines3.common.callbacks import BaseCallback

    model = sb3_model(algo, seed, ZOO[algo])
    agent = SB3Agent(model, deterministic=True)

    class Check(BaseCallback):
        def _on_step(self) -> bool:
            points = grid.due(self.num_timesteps)
            if points:
                seconds = grid.train_seconds()
                grid.record(points, grid.score(agent), [seconds] * len(points))
            return True

    grid.record([0], grid.score(agent), [0.0])
    model.learn(total_timesteps=budget, callback=Check())
    return agent


def cartpole_run(agent: str, seed: int, budget: int = 50_000) -> dict:
    """Train `agent` ("our_ppo", "sb3_ppo" or "sb3_dqn") on CartPole-v1 for `budget`
    env steps, checked on the grid; the final greedy mean over 100 fresh episodes.
    Chapter 6."""
    torch.set_num_threads(1)
    grid = _Grid(budget)
    with torch.random.fork_rng():
        if agent == "our_ppo":
            trained = _ours_on_grid(seed, budget, grid)
        elif agent in ("sb3_ppo", "sb3_dqn"):
            trained = _sb3_on_grid(agent[4:], seed, budget, grid)
        else:
            raise ValueError(f"unknown agent {agent!r}: our_ppo, sb3_ppo or sb3_dqn")
        train_seconds = grid.train_seconds()
        final = play(trained, [None] * 100, 1, EVAL_SEED + SOLVE_EPISODES)
    return {
        "agent": agent,
        "seed": seed,
        "budget": budget,
        "train_seconds": round(train_seconds, 2),
        "final_returns": final[:, 0].tolist(),
        **grid.result(),
    }


def task_run(algo: str, task: CartPoleTask, budget: int, seed: int, eval_seed: int):
    """SB3's `algo` ("ppo" or "dqn", RL Zoo's CartPole-v1 settings) trained from
    scratch on `task` for `budget` env steps; the mean of 10 sampled episodes.
    Chapter 6."""
    from stable_baselines3.common.env_util import make_vec_env

    from ..cartpole.envs import make_env

    torch.set_num_threads(1)
    zoo = ZOO[algo]
    with torch.random.fork_rng():
        start = time.perf_counter()
        env = make_vec_env(lambda: make_env(task), n_envs=zoo["n_envs"], seed=seed)
        model = sb3_model(algo, seed, zoo, env=env)
        model.learn(total_timesteps=budget)
        seconds = time.perf_counter() - start
        returns = play(SB3Agent(model, deterministic=False), [task], 10, eval_seed)
    return {
        "agent": f"sb3_{algo}",
        "seed": seed,
        "budget": budget,
        "train_seconds": round(seconds, 2),
        "return": float(returns.mean()),
    }


def _recurrent_ppo(seed: int, budget: int, tasks):
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from ..cartpole.envs import TaskDrawEnv

    z = RPPO_ZOO
    env = VecNormalize(
        make_vec_env(lambda: TaskDrawEnv(tasks), n_envs=z["n_envs"], seed=seed),
        gamma=z["gamma"],
    )
    kwargs = dict(z["policy_kwargs"], activation_fn=torch.nn.ReLU)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        seed=seed,
        device="cpu",
        learning_rate=_lin(z["learning_rate"]),
        clip_range=_lin(z["clip_range"]),
        policy_kwargs=kwargs,
        **{k: z[k] for k in ("n_steps", "batch_size", "gae_lambda", "gamma")},
        n_epochs=z["n_epochs"],
        ent_coef=z["ent_coef"],
    )
    model.learn(total_timesteps=budget)
    env.training = False
    return SB3Agent(model, deterministic=True, normalize=env), model


def memory_run(agent: str, seed: int, budget: int, test_tasks, eval_seed: int):
    """Train a memory learner on flip+physics's training tasks for `budget` env steps:
    "sb3_recurrent_ppo", or "in_context_best" / "in_context_last" (chapter 4's recipe
    keeping its best-validated or its last weights); greedy returns on `test_tasks`
    with 0 gradient steps, 5 episodes each. Chapter 6."""
    from ..adapt.in_context import InContextConfig, train_in_context
    from ..cartpole.tasks import get_family
    from ..models.ssm import StateSpaceModel

    torch.set_num_threads(1)
    tasks = list(get_family("flip+physics").train)
    with torch.random.fork_rng():
        start = time.perf_counter()
        if agent == "sb3_recurrent_ppo":
            trained, model = _recurrent_ppo(seed, budget, tasks)
            steps = int(model.num_timesteps)
            parameters = sum(p.numel() for p in model.policy.parameters())
        elif agent in ("in_context_best", "in_context_last"):
            torch.manual_seed(seed)
            model = StateSpaceModel(32, 4, 4, 64)
            keep = agent.rsplit("_", 1)[1]
            cfg = InContextConfig(
                seed=seed, max_env_steps=budget, max_seconds=math.inf, keep=keep
            )
            result = train_in_context(model, cfg)
            steps = int(result.history["env_steps"][-1])
            parameters = sum(p.numel() for p in model.parameters())
            trained = OurAgent(model, greedy=True)
        else:
            raise ValueError(f"unknown memory agent {agent!r}")
        seconds = time.perf_counter() - start
        returns = play(trained, list(test_tasks), 5, eval_seed)
    return {
        "agent": agent,
        "seed": seed,
        "budget": budget,
        "env_steps": steps,
        "parameters": parameters,
        "train_seconds": round(seconds, 2),
        "returns": returns.mean(1).tolist(),
    }
