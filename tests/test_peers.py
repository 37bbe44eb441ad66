"""Chapter 6's peers run: one scoring function for every agent, the evaluation grid,
the plan's interleaving and the tables' statistics."""
import math

import numpy as np
import pytest
import torch

from ssm_metarl import StateSpaceModel
from ssm_metarl.bench import peer_runs, peers_report, peers_study
from ssm_metarl.bench.play import OurAgent, SB3Agent, play
from ssm_metarl.cartpole.envs import TaskDrawEnv
from ssm_metarl.cartpole.tasks import CartPoleTask, get_family


class Constant:
    """Always pushes one way: its returns depend only on the initial states."""

    def __init__(self, action):
        self.action = action

    def reset(self, n):
        self.n = n

    def act(self, obs, prev_action, prev_reward):
        assert obs.shape == (self.n, 4) and obs.dtype == np.float32
        return np.full(self.n, self.action)


def test_play_gives_every_agent_the_same_episodes():
    a = play(Constant(0), [None, CartPoleTask()], 3, seed=5)
    b = play(Constant(0), [None, CartPoleTask()], 3, seed=5)
    assert a.shape == (2, 3) and np.array_equal(a, b)
    # CartPole-v1 and the default task are one game: the same seed, the same episodes
    assert np.array_equal(play(Constant(1), [None], 3, 5), play(Constant(1), [CartPoleTask()], 3, 5))
    assert not np.array_equal(a, play(Constant(0), [None, CartPoleTask()], 3, seed=6))
    assert (a < 20).all()  # pushing one way drops the pole within a few steps


def test_our_agent_plays_greedy_deterministically_and_samples_from_a_seed():
    torch.manual_seed(0)
    model = StateSpaceModel(8, 4, 4, 16)
    greedy = [play(OurAgent(model), [None], 2, seed=1) for _ in range(2)]
    assert np.array_equal(*greedy)
    sampled = [play(OurAgent(model, greedy=False, seed=3), [None], 4, 1) for _ in range(2)]
    assert np.array_equal(*sampled)


def test_sb3_agent_passes_state_and_episode_starts():
    seen = []

    class Model:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            seen.append((state, episode_start.copy(), deterministic))
            return np.ones(len(obs), dtype=int), "h"

    agent = SB3Agent(Model(), deterministic=False)
    agent.reset(2)
    agent.act(np.zeros((2, 4), np.float32), None, None)
    agent.act(np.zeros((2, 4), np.float32), None, None)
    assert seen[0][0] is None and seen[0][1].all() and seen[0][2] is False
    assert seen[1][0] == "h" and not seen[1][1].any()


def test_task_draw_env_hides_a_new_task_each_reset_and_is_seeded():
    from gymnasium.utils.env_checker import check_env

    tasks = get_family("flip+physics").train
    env = TaskDrawEnv(tasks)
    check_env(env, skip_render_check=True)
    env.reset(seed=3)
    first = [env.reset()[0] is not None and env.task for _ in range(6)]
    env.reset(seed=3)
    again = [env.reset()[0] is not None and env.task for _ in range(6)]
    assert first == again and len(set(first)) > 1
    with pytest.raises(ValueError, match="tasks is empty"):
        TaskDrawEnv([])


def test_train_ppo_shows_observe_the_weights_after_every_update():
    from ssm_metarl.rl.configs import PPOConfig
    from ssm_metarl.rl.loops import train_ppo

    torch.manual_seed(0)
    seen = []
    cfg = PPOConfig(max_env_steps=600, target_return=None, max_seconds=math.inf)
    result = train_ppo(StateSpaceModel(8, 4, 4, 16), [CartPoleTask()], cfg, seed=0,
                       observe=lambda policy, steps: seen.append(steps))
    assert seen == list(result.history["env_steps"]) and seen == sorted(seen)


def test_our_ppo_is_checked_on_every_grid_point_with_training_seconds():
    run = peer_runs.cartpole_run("our_ppo", seed=0, budget=2 * peer_runs.GRID)
    assert run["grid_steps"] == [0, peer_runs.GRID, 2 * peer_runs.GRID]
    assert run["grid_seconds"] == sorted(run["grid_seconds"]) and run["grid_seconds"][0] == 0
    assert run["grid_seconds"][-1] <= run["train_seconds"] + 1e-6
    assert len(run["final_returns"]) == 100 and run["eval_seconds"] > 0
    with pytest.raises(ValueError, match="unknown agent"):
        peer_runs.cartpole_run("a2c", 0, 1000)


def test_grid_solves_at_the_first_point_at_the_target():
    grid = peer_runs._Grid(3000)
    assert grid.due(1500) == [0, 1000]
    grid.record([0, 1000], 100.0, [0.0, 1.0])
    assert grid.due(1500) == []
    grid.record([2000], peer_runs.TARGET, [2.0])
    grid.record([3000], 10.0, [3.0])
    result = grid.result()
    assert result["solved_at_steps"] == 2000 and result["solved_at_seconds"] == 2.0


def test_plan_interleaves_every_agent_over_all_seeds():
    calls = peers_study.plan()
    names = [c[0] for c in calls]
    assert len(names) == len(set(names))
    for agent in peers_study.CARTPOLE_AGENTS:
        seeds = [c[3] for c in calls if c[1] == "cartpole" and c[2] == agent]
        assert seeds == list(range(peers_study.SEEDS))
    first = {c[2] for c in calls[:8]}
    assert set(peers_study.CARTPOLE_AGENTS) <= first  # seed 0 of every agent comes first
    budgets = {c[4] for c in calls if c[1] == "held_out"}
    assert budgets == {peers_study.SUPPORT_STEPS * m for m in peers_study.MULTIPLES}
    assert peer_runs.GRID <= 1000


def _run(agent, seed, steps, seconds, final=500.0):
    return {"kind": "cartpole", "agent": agent, "seed": seed, "budget": 5000,
            "solved": steps is not None, "solved_at_steps": steps,
            "solved_at_seconds": seconds, "final_returns": [final] * 4,
            "train_seconds": 9.0, "eval_seconds": 1.0,
            "grid_steps": [0, 1000], "grid_returns": [10.0, final], "grid_seconds": [0.0, 2.0]}


def test_median_to_solve_counts_unsolved_seeds_as_never():
    assert peers_report.median_ci([1.0, 2.0, math.inf]).mean == 2.0
    assert peers_report.median_ci([1.0, math.inf, math.inf]).mean == math.inf
    e = peers_report.median_ci([3.0] * 5)
    assert e.low == e.mean == e.high == 3.0


def test_cartpole_rows_and_ratio_of_medians():
    runs = [_run("our_ppo", s, 4000, 4.0) for s in range(4)]
    runs += [_run("sb3_ppo", s, 2000, 8.0) for s in range(4)]
    runs += [_run("sb3_dqn", s, None, None, final=100.0) for s in range(4)]
    peers = {"runs": runs}
    rows = {r["agent"]: r for r in peers_report.cartpole_rows(peers)}
    assert rows["our_ppo"]["solved"] == 4 and rows["our_ppo"]["steps"].mean == 4000
    assert rows["sb3_dqn"]["solved"] == 0 and rows["sb3_dqn"]["final"].mean == 100.0
    steps = peers_report.solve_ratio(peers, "sb3_ppo", "our_ppo")
    seconds = peers_report.solve_ratio(peers, "sb3_ppo", "our_ppo", "solved_at_seconds")
    assert steps.mean == steps.low == steps.high == 0.5 and seconds.mean == 2.0
    grid, median, q25, q75 = peers_report.curve_quantiles(peers, "sb3_ppo", "seconds")
    assert median[0] == 10.0 and median[-1] == 500.0 and (q25 <= q75).all()


def test_held_out_rows_are_paired_with_maml_on_the_same_tasks():
    runs = [{"kind": "held_out", "agent": "sb3_ppo", "seed": t, "task": t, "budget": 100,
             "return": float(t), "train_seconds": 1.0} for t in range(4)]
    maml = np.array([1.0, 2.0, 3.0, 4.0, 99.0])  # task 4 has no SB3 run: left out
    (row,) = peers_report.held_out_rows({"runs": runs}, maml)
    assert row["tasks"] == [0, 1, 2, 3]
    assert row["minus_maml"].mean == -1.0 and row["minus_maml"].low == -1.0


def test_memory_rows_use_two_level_intervals():
    runs = [{"kind": "memory", "agent": "in_context_best", "seed": s, "env_steps": 100,
             "parameters": 7, "returns": [float(s), 10.0 + s]} for s in range(3)]
    (row,) = peers_report.memory_rows({"runs": runs})
    assert row["seeds"] == 3 and row["return"].mean == pytest.approx(6.0)
    assert row["return"].low < 6.0 < row["return"].high


def test_peers_command_checks_its_flags_before_training(tmp_path):
    import argparse

    from ssm_metarl.bench.peers_cli import check_peers

    with pytest.raises(ValueError, match="--workers"):
        check_peers(argparse.Namespace(workers=0, root=str(tmp_path)))
    check_peers(argparse.Namespace(workers=2, root=str(tmp_path / "new")))


def test_sb3_peers_train_on_the_grid_on_a_task_and_on_hidden_worlds():
    pytest.importorskip("sb3_contrib")
    from ssm_metarl.cartpole.task_sets import task_sets

    run = peer_runs.cartpole_run("sb3_dqn", seed=0, budget=peer_runs.GRID)
    assert run["grid_steps"] == [0, peer_runs.GRID] and run["train_seconds"] > 0
    task = task_sets("goal_sharp")["held_out"].tasks[0]
    held = peer_runs.task_run("ppo", task, budget=256, seed=0, eval_seed=1)
    assert held["agent"] == "sb3_ppo" and held["return"] >= 0
    tests = task_sets("flip+physics")["test"].tasks[:2]
    memory = peer_runs.memory_run("sb3_recurrent_ppo", 0, 256, tests, eval_seed=1)
    assert memory["env_steps"] >= 256 and len(memory["returns"]) == 2
    assert memory["parameters"] > 6744  # the Zoo's LSTM is larger than the card's SSM
    with pytest.raises(ValueError, match="unknown memory agent"):
        peer_runs.memory_run("gru", 0, 256, tests, eval_seed=1)
