"""Speed benchmarks: ``python -m ssm_metarl bench NAME``.

Every benchmark times the things it compares side by side in one run, on the same
machine and inputs, and reports ratios; absolute seconds vary between machines. A
benchmark is a function ``bench_NAME(args) -> dict`` in this module; the CLI finds it by
name and prints its result as JSON. The timing helpers are in
:mod:`ssm_metarl.report.timing`. Taught in chapters 1-3 (each benchmark's docstring
names its chapter).
"""

from __future__ import annotations

import os

import torch

from ..report.timing import speedup, time_interleaved, time_rounds, torch_threads

# the last three live in ssm_metarl.report.timing
__all__ = ["available", "time_rounds", "time_interleaved", "speedup"]


def available() -> list[str]:
    """Names of the benchmarks defined in this module
    (``python -m ssm_metarl bench NAME``; chapters 1-3)."""
    return sorted(
        name[len("bench_") :] for name in globals() if name.startswith("bench_")
    )


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def bench_ssm(args) -> dict:
    """Forward + backward time of :class:`~ssm_metarl.DiagonalSSM`'s three modes, side
    by side.

    Batch 16, 32 channels, L in {512, 2048}; the layer's default 16 complex states per
    channel, and 1 state per channel to show how the per-step work moves the balance.
    Timed variants:

    - ``recurrence``: the Python loop over time steps;
    - ``scan``: the chunked scan (chunks of ``SCAN_CHUNK`` steps);
    - ``plain_scan``: the same with ``chunk=1``, a log-depth scan over every step's
      state;
    - ``fft``: the kernel and an FFT convolution;
    - ``fft_floor``: only the three length-2L FFTs over all B x H sequences that any FFT
      convolution's forward + backward runs (rfft of the input and of the output
      gradient, irfft of the product). ``loop / fft_floor`` bounds the speed-up any FFT
      mode could reach.

    Each configuration runs on one thread and on all of torch's threads: on a machine
    shared with other jobs, a multi-threaded operation waits for its slowest thread.
    Reports each variant's best seconds, its speed-up over the loop (mean per-round
    ratio, 95% bootstrap CI over rounds), and the largest difference between the modes'
    outputs. Chapter 1 (``01_state_space_models``) explains it.
    """
    from ..models.s4d import SCAN_CHUNK
    from ..models.s4d_speed import forward_backward_variants

    # sizes: chapter 6's speed section shrinks them
    batch, channels, rounds = 16, 32, getattr(args, "rounds", 5)
    modes = ("loop", "plain scan", "scan", "fft")
    rows = []
    for threads in getattr(args, "threads", None) or sorted(
        {1, torch.get_num_threads()}
    ):
        with torch_threads(threads):
            for state_dim in getattr(args, "state_dims", (16, 1)):
                for length in getattr(args, "lengths", (512, 2048)):
                    variants = forward_backward_variants(
                        batch, channels, state_dim, length, seed=args.seed
                    )
                    outputs = {name: variants[name]() for name in modes}
                    times = time_rounds(variants, rounds=rounds)
                    rows.append(
                        {
                            "threads": threads,
                            "batch": batch,
                            "channels": channels,
                            "state_dim": state_dim,
                            "length": length,
                            "scan_chunk": SCAN_CHUNK,
                            "best_seconds": {
                                name: round(min(t), 5) for name, t in times.items()
                            },
                            "speedup_over_loop": {
                                name: str(speedup(times, "loop", name))
                                for name in ("scan", "plain scan", "fft", "fft floor")
                            },
                            "ratios": {
                                name: speedup(times, "loop", name).to_dict()
                                for name in ("scan", "fft", "fft floor")
                            }
                            | {
                                "fft_floor_over_fft": speedup(
                                    times, "fft", "fft floor"
                                ).to_dict()
                            },
                            "max_abs_difference": float(
                                max(
                                    (y - outputs["loop"]).abs().max()
                                    for y in outputs.values()
                                )
                            ),
                        }
                    )
    return {
        "benchmark": "ssm",
        "what": (
            f"forward+backward of DiagonalSSM, {rounds} interleaved rounds; speed-ups "
            "are the mean per-round ratio [95% bootstrap CI]"
        ),
        "targets_at_length_2048": "fft >= 100x and scan >= 2x faster than the loop",
        "load_average_1min": _load_average(),
        "rows": rows,
    }


def _load_average() -> float | None:
    """The machine's 1-minute load average (other processes compete for the cores),
    if the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def bench_maml(args) -> dict:
    """One MAML-RL meta-gradient: all tasks in one batched graph vs a Python loop over
    tasks.

    20 tasks x 10 episodes x 200 steps of the card's SSM (6,744 parameters), one inner
    policy-gradient step, second and first order; synthetic observations and advantages
    so every episode has the full 200 steps. Three variants: hand-written batched
    matmuls (what training uses), ``vmap`` over the same loss for one task, and a loop
    over tasks, on one torch thread. Reports best-of-2 interleaved seconds, ratios, and
    the largest difference between the gradients. Chapter 3 (``03_maml``) explains it.
    """
    from ..meta.maml import MetaMAML
    from ..meta.maml_rl import policy_gradient_loss
    from ..models.ssm import StateSpaceModel

    n_tasks, episodes, steps, repeats = 20, 10, 200, getattr(args, "repeats", 2)
    # chapter 6's speed section runs fewer
    episodes = getattr(args, "episodes", episodes)
    g = _seeded(args.seed)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = StateSpaceModel()

    def batch():
        logits = torch.zeros(n_tasks, episodes, steps)
        return {
            "obs": 0.1 * torch.randn(n_tasks, episodes, steps, 4, generator=g),
            "actions": torch.randint(0, 2, (n_tasks, episodes, steps), generator=g),
            "mask": torch.ones(n_tasks, episodes, steps, dtype=torch.bool),
            "advantages": torch.randn(n_tasks, episodes, steps, generator=g),
            "old_log_probs": logits - torch.log(torch.tensor(2.0)),
        }

    support, query = batch(), batch()
    loss = policy_gradient_loss(model)
    losses = {"task_batched": loss, "one_task": loss.one_task}
    variants = {  # name: (loss, batched)
        # all tasks in one graph, per-task weights in batched matmuls
        "batched_matmul": ("task_batched", True),
        # all tasks in one graph, torch.func.vmap over the one-task loss
        "vmap": ("one_task", True),
        # a Python loop over tasks, the same per-task kernels
        "loop": ("task_batched", False),
    }
    rows = []
    for first_order in getattr(args, "orders", (False, True)):

        def meta_gradient(name, first_order=first_order):
            loss, batched = variants[name]
            maml = MetaMAML(model, first_order=first_order, batched=batched)
            model.zero_grad(set_to_none=True)
            maml.meta_loss(losses[loss], support, query).backward()
            return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

        # tiny per-task matmuls: one thread (``bench rollout`` shows what a second
        # costs)
        with torch_threads(1):
            grads = {name: meta_gradient(name) for name in variants}
            times = time_rounds(
                {name: (lambda n=name: meta_gradient(n)) for name in variants},
                rounds=repeats,
                warmup=0,
            )
            seconds = {name: min(t) for name, t in times.items()}
        rows.append(
            {
                "order": "first" if first_order else "second",
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "loop_over_batched": round(
                    seconds["loop"] / seconds["batched_matmul"], 2
                ),
                "vmap_over_batched": round(
                    seconds["vmap"] / seconds["batched_matmul"], 2
                ),
                "loop_over_batched_ci": speedup(
                    times, "loop", "batched_matmul"
                ).to_dict(),
                "max_abs_gradient_difference": float(
                    max(
                        (g - grads["batched_matmul"]).abs().max()
                        for g in grads.values()
                    )
                ),
            }
        )
    return {
        "benchmark": "maml",
        "what": (
            f"one meta-gradient, {n_tasks} tasks x {episodes} episodes x {steps} "
            f"steps, 1 inner step, best of {repeats} interleaved runs"
        ),
        "torch_threads": 1,
        "load_average_1min": _load_average(),
        "rows": rows,
    }


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
        "load_average_1min": _load_average(),
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
        "load_average_1min": _load_average(),
        "summary": summary,
        "runs": runs,
    }
