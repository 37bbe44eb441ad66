"""``python -m ssm_metarl bench rollout`` and ``bench rl``: chapter 2's CartPole
rollouts and policy-gradient training, timed.

``bench_rollout`` compares the batched collector with the naive one-environment loop of
the model card's example; ``bench_rl`` measures the wall time and environment steps
REINFORCE and PPO need to solve CartPole-v1. The registry of benchmarks is
:mod:`ssm_metarl.bench.speed`. Taught in chapter 2 (``02_cartpole_tasks``).
"""

from __future__ import annotations

import torch

from ..report.timing import load_average, torch_threads

__all__ = ["bench_rollout", "bench_rl"]


def bench_rollout(args) -> dict:
    """Rollout throughput: :func:`~ssm_metarl.cartpole.rollout.collect` on 1,024
    environments vs the naive loop.

    The naive loop is what the model card's example does: one
    ``gym.make("CartPole-v1")`` environment and one SSM forward at batch 1 per step. The
    batched collector plays 1,024 episodes at once on Gymnasium's vectorised CartPole
    with one SSM forward per step. Only steps actually played count: the collector keeps
    stepping finished environments until the last episode ends, and that work is not
    counted. Two policies, both the card's SSM (32, 4, 4, 64) sampling its actions:
    freshly initialised (episodes of ~20 steps, so most batched work is wasted on
    finished episodes), and with its feedthrough set to the rule a = [θ + 0.5 θ̇ > 0]
    and its readout zeroed (the same forward cost, episodes of 500 steps, like a trained
    policy). Each on one thread and on all of torch's threads. Chapter 2
    (``02_cartpole_tasks``) explains it.
    """
    from ..cartpole.rollout_speed import rollout_rates
    from ..models.ssm import StateSpaceModel, balancing_ssm

    n_envs, naive_steps, rounds = (
        1024,
        getattr(args, "naive_steps", 2000),
        getattr(args, "rounds", 3),
    )
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        untrained = StateSpaceModel(32, 4, 4, 64)
    balancing = balancing_ssm(seed=args.seed + 1)
    rows = []
    for threads in getattr(args, "threads", None) or sorted(
        {1, torch.get_num_threads()}
    ):
        with torch_threads(threads):
            for name, model in (("untrained", untrained), ("balancing", balancing))[
                : getattr(args, "policies", 2)
            ]:
                rates = rollout_rates(
                    model,
                    (n_envs,),
                    naive_steps,
                    rounds=rounds,
                    seed=args.seed,
                    max_steps=None,
                )
                rows.append(
                    {
                        "threads": threads,
                        "policy": name,
                        "batched_steps_played": rates.played[n_envs],
                        "naive_steps_per_s": round(rates.rate("naive")),
                        "batched_steps_per_s": round(rates.rate(n_envs)),
                        "speedup": str(rates.speedup(n_envs)),
                        "ratio": rates.speedup(n_envs).to_dict(),
                    }
                )
    return {
        "benchmark": "rollout",
        "what": f"env steps per second, naive 1-env loop ({naive_steps} steps) vs "
        f"collect() on {n_envs} envs, {rounds} interleaved rounds; speed-up: "
        "mean per-round ratio [95% bootstrap CI]",
        "target": "speedup >= 150",
        "load_average_1min": load_average(),
        "rows": rows,
    }


def bench_rl(args) -> dict:
    """Wall time and environment steps until the card's SSM solves CartPole-v1,
    REINFORCE and PPO.

    Five seeds each (``--seed`` to ``--seed + 4``), default
    :class:`~ssm_metarl.rl.loops.ReinforceConfig` and
    :class:`~ssm_metarl.rl.loops.PPOConfig`. "Solved" means a greedy mean return >= 475
    over 100 real Gymnasium episodes; the clock includes every evaluation. Runs on one
    torch thread (the networks are tiny; ``bench rollout`` shows what a second,
    contended thread costs). Target: <= 20 s for at least 4 of 5 seeds. Chapter 2
    (``02_cartpole_tasks``) explains it.
    """
    from ..cartpole.tasks import CartPoleTask
    from ..models.ssm import StateSpaceModel
    from ..rl.loops import PPOConfig, ReinforceConfig, train_ppo, train_reinforce

    budget, seeds = 20.0, range(args.seed, args.seed + 5)
    algorithms = {
        "reinforce": (train_reinforce, ReinforceConfig(max_seconds=60.0)),
        "ppo": (train_ppo, PPOConfig(max_seconds=60.0)),
    }
    runs = []
    with torch_threads(1):
        for seed in seeds:
            # alternate, so load bursts hit both
            for name, (train, config) in algorithms.items():
                with torch.random.fork_rng():
                    torch.manual_seed(seed)
                    model = StateSpaceModel(32, 4, 4, 64)
                result = train(model, [CartPoleTask()], config, seed=seed)
                runs.append(
                    {
                        "algorithm": name,
                        "seed": seed,
                        "solved": result.solved,
                        "seconds": result.solved_at_seconds
                        and round(result.solved_at_seconds, 2),
                        "env_steps": result.solved_at_steps,
                        "iterations": len(result.history["iteration"]),
                        "skipped_updates": result.skipped_updates,
                        "eval_mean": result.final_eval
                        and round(result.final_eval["mean"], 1),
                    }
                )
    summary = {}
    for name in algorithms:
        mine = [r for r in runs if r["algorithm"] == name]
        solved = sorted(r["seconds"] for r in mine if r["solved"])
        steps = sorted(r["env_steps"] for r in mine if r["solved"])
        summary[name] = {
            "solved_within_budget": sum(s <= budget for s in solved),
            "seeds": len(mine),
            "median_seconds": solved[len(solved) // 2] if solved else None,
            "median_env_steps": steps[len(steps) // 2] if steps else None,
        }
    return {
        "benchmark": "rl",
        "what": "seconds and env steps to a greedy mean >= 475 over 100 real Gymnasium "
        "episodes, card SSM (32, 4, 4, 64), CartPole-v1",
        "target": f"<= {budget:g} s for >= 4 of 5 seeds",
        "torch_threads": 1,
        "load_average_1min": load_average(),
        "summary": summary,
        "runs": runs,
    }
