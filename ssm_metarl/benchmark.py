"""Speed benchmarks: ``python -m ssm_metarl bench NAME``.

Every benchmark times the things it compares side by side in one run, on the same
machine and inputs, and reports ratios; absolute seconds vary between machines.
A benchmark is a function ``bench_NAME(args) -> dict`` in this module; the CLI finds it
by name and prints its result as JSON.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import torch

from .stats import Estimate, bootstrap_ci

__all__ = ["time_rounds", "time_interleaved", "speedup", "available"]


def available() -> list[str]:
    """Names of the benchmarks defined in this module."""
    return sorted(name[len("bench_"):] for name in globals() if name.startswith("bench_"))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def time_rounds(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Wall time in seconds of each ``fns[name]()`` in every round, the variants taking turns.

    Within a round the variants run one after another (A, B, C, A, B, C, ...), so a burst of
    load from another process slows all of them rather than one.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Best wall time in seconds of each ``fns[name]()`` over ``repeats`` rounds of :func:`time_rounds`:
    the least disturbed run."""
    return {name: min(times) for name, times in time_rounds(fns, repeats, warmup).items()}


def speedup(times: dict[str, list[float]], baseline: str, name: str) -> Estimate:
    """How many times faster ``name`` ran than ``baseline``: the mean of the per-round ratios of
    :func:`time_rounds`, with a 95% bootstrap CI over rounds."""
    return bootstrap_ci([slow / fast for slow, fast in zip(times[baseline], times[name])])


def bench_ssm(args) -> dict:
    """Forward + backward time of :class:`~ssm_metarl.DiagonalSSM`'s three modes, side by side.

    Batch 16, 32 channels, L in {512, 2048}; the layer's default 16 complex states per channel,
    and 1 state per channel to show how the per-step work moves the balance. Timed variants:

    - ``recurrence``: the Python loop over time steps;
    - ``scan``: the chunked scan (chunks of ``SCAN_CHUNK`` steps);
    - ``plain_scan``: the same with ``chunk=1``, a log-depth scan over every step's state;
    - ``fft``: the kernel and an FFT convolution;
    - ``fft_floor``: only the three length-2L FFTs over all B x H sequences that any FFT
      convolution's forward + backward runs (rfft of the input and of the output gradient,
      irfft of the product). ``loop / fft_floor`` bounds the speed-up any FFT mode could reach.

    Each configuration runs on one thread and on all of torch's threads: on a machine shared
    with other jobs, a multi-threaded operation waits for its slowest thread. Reports each
    variant's best seconds, its speed-up over the loop (mean per-round ratio, 95% bootstrap CI
    over rounds), and the largest difference between the modes' outputs.
    Chapter 1 (``01_state_space_models``) explains it.
    """
    from .ssm import SCAN_CHUNK, DiagonalSSM

    batch, channels, rounds = 16, 32, 5
    all_threads = torch.get_num_threads()
    rows = []
    try:
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            for state_dim in (16, 1):
                for length in (512, 2048):
                    model = DiagonalSSM(channels, state_dim, seed=args.seed)
                    u = torch.randn(batch, length, channels, generator=_seeded(args.seed))
                    u_rows = u.transpose(1, 2).contiguous()

                    def forward_backward(mode, chunk=SCAN_CHUNK):
                        model.zero_grad(set_to_none=True)
                        y = model(u, mode=mode, chunk=chunk)
                        y.square().mean().backward()
                        return y.detach()

                    def fft_floor():
                        spectrum = torch.fft.rfft(u_rows, n=2 * length)
                        torch.fft.rfft(torch.fft.irfft(spectrum, n=2 * length))

                    variants = {"recurrence": lambda: forward_backward("recurrence"),
                                "scan": lambda: forward_backward("scan"),
                                "plain_scan": lambda: forward_backward("scan", chunk=1),
                                "fft": lambda: forward_backward("fft"),
                                "fft_floor": fft_floor}
                    outputs = {name: variants[name]() for name in ("recurrence", "scan", "plain_scan", "fft")}
                    times = time_rounds(variants, rounds=rounds)
                    rows.append({
                        "threads": threads, "batch": batch, "channels": channels, "state_dim": state_dim,
                        "length": length, "scan_chunk": SCAN_CHUNK,
                        "best_seconds": {name: round(min(t), 5) for name, t in times.items()},
                        "speedup_over_loop": {name: str(speedup(times, "recurrence", name))
                                              for name in ("scan", "plain_scan", "fft", "fft_floor")},
                        "max_abs_difference": float(max((y - outputs["recurrence"]).abs().max()
                                                        for y in outputs.values())),
                    })
    finally:
        torch.set_num_threads(all_threads)
    return {"benchmark": "ssm",
            "what": f"forward+backward of DiagonalSSM, {rounds} interleaved rounds; speed-ups are the mean "
                    "per-round ratio [95% bootstrap CI]",
            "targets_at_length_2048": "fft >= 100x and scan >= 2x faster than the loop",
            "load_average_1min": _load_average(), "rows": rows}


def _load_average() -> float | None:
    """The machine's 1-minute load average (other processes compete for the cores), if the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def bench_maml(args) -> dict:
    """One MAML-RL meta-gradient: all tasks in one batched graph vs a Python loop over tasks.

    20 tasks x 10 episodes x 200 steps of the card's SSM (6,744 parameters), one inner
    policy-gradient step, second and first order; synthetic observations and advantages so
    every episode has the full 200 steps. Three variants: hand-written batched matmuls
    (what training uses), ``vmap`` over ``functional_call`` (works for any model), and a
    loop over tasks, on one torch thread. Reports best-of-2 interleaved seconds, ratios, and the largest
    difference between the gradients. Chapter 3 (``03_maml``) explains it.
    """
    from .maml import MetaMAML, policy_gradient_loss
    from .ssm import StateSpaceModel

    n_tasks, episodes, steps, repeats = 20, 10, 200, 2
    g = _seeded(args.seed)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = StateSpaceModel()

    def batch():
        logits = torch.zeros(n_tasks, episodes, steps)
        return {"obs": 0.1 * torch.randn(n_tasks, episodes, steps, 4, generator=g),
                "actions": torch.randint(0, 2, (n_tasks, episodes, steps), generator=g),
                "mask": torch.ones(n_tasks, episodes, steps, dtype=torch.bool),
                "advantages": torch.randn(n_tasks, episodes, steps, generator=g),
                "old_log_probs": logits - torch.log(torch.tensor(2.0))}

    support, query = batch(), batch()
    losses = {"fast": policy_gradient_loss(model), "functional_call": policy_gradient_loss(model, fast=False)}
    variants = {  # name: (loss, batched)
        "batched_matmul": ("fast", True),  # all tasks in one graph, hand-written batched matmuls
        "vmap": ("functional_call", True),  # all tasks in one graph, torch.func.vmap over functional_call
        "loop": ("fast", False),  # a Python loop over tasks, the same per-task kernels
    }
    rows, all_threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-task matmuls: one thread (see ``bench rollout`` for what a second costs)
    for first_order in (False, True):
        def meta_gradient(name):
            loss, batched = variants[name]
            maml = MetaMAML(model, first_order=first_order, batched=batched)
            model.zero_grad(set_to_none=True)
            maml.meta_loss(losses[loss], support, query).backward()
            return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

        grads = {name: meta_gradient(name) for name in variants}
        seconds = time_interleaved({name: (lambda n=name: meta_gradient(n)) for name in variants},
                                   repeats=repeats, warmup=0)
        rows.append({"order": "first" if first_order else "second",
                     "seconds": {k: round(v, 3) for k, v in seconds.items()},
                     "loop_over_batched": round(seconds["loop"] / seconds["batched_matmul"], 2),
                     "vmap_over_batched": round(seconds["vmap"] / seconds["batched_matmul"], 2),
                     "max_abs_gradient_difference": float(max((g - grads["batched_matmul"]).abs().max()
                                                              for g in grads.values()))})
    torch.set_num_threads(all_threads)
    return {"benchmark": "maml",
            "what": f"one meta-gradient, {n_tasks} tasks x {episodes} episodes x {steps} steps, 1 inner step, "
                    f"best of {repeats} interleaved runs",
            "torch_threads": 1, "load_average_1min": _load_average(), "rows": rows}


def bench_rollout(args) -> dict:
    """Rollout throughput: :func:`~ssm_metarl.rollout.collect` on 1,024 environments vs the naive loop.

    The naive loop is what the model card's example does: one ``gym.make("CartPole-v1")``
    environment and one SSM forward at batch 1 per step. The batched collector plays 1,024
    episodes at once on Gymnasium's vectorised CartPole with one SSM forward per step. Only
    steps actually played count: the collector keeps stepping finished environments until
    the last episode ends, and that work is not counted. Two policies, both the card's SSM
    (32, 4, 4, 64) sampling its actions: freshly initialised (episodes of ~20 steps, so most
    batched work is wasted on finished episodes), and with its feedthrough set to the rule
    a = [θ + 0.5 θ̇ > 0] and its readout zeroed (the same forward cost, episodes of 500 steps,
    like a trained policy). Each on one thread and on all of torch's threads.
    Chapter 2 (``02_cartpole_tasks``) explains it.
    """
    import gymnasium as gym

    from .rollout import collect, select_actions
    from .ssm import StateSpaceModel
    from .tasks import CartPoleTask

    n_envs, naive_steps, repeats = 1024, 2000, 3
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        untrained, balancing = StateSpaceModel(32, 4, 4, 64), StateSpaceModel(32, 4, 4, 64)
    with torch.no_grad():
        balancing.readout[2].weight.zero_()
        balancing.feedthrough.weight.zero_()
        balancing.feedthrough.weight[1] = torch.tensor([0.0, 0.0, 100.0, 50.0])  # logit(right) - logit(left)
        balancing.readout[2].bias.zero_()
        balancing.feedthrough.bias.zero_()

    def naive(model) -> int:
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=args.seed)
        hidden, generator = model.init_hidden(1), _seeded(args.seed)
        with torch.no_grad():
            for _ in range(naive_steps):
                out, hidden = model(torch.as_tensor(obs).unsqueeze(0), hidden)
                obs, _, terminated, truncated, _ = env.step(int(select_actions(out, False, generator)))
                if terminated or truncated:
                    obs, _ = env.reset()
                    hidden = model.init_hidden(1)
        return naive_steps

    all_threads = torch.get_num_threads()
    rows = []
    try:
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            for name, model in (("untrained", untrained), ("balancing", balancing)):
                batched_steps = collect(model, [CartPoleTask()], n_envs, seed=args.seed).num_steps
                seconds = time_interleaved({"naive": lambda: naive(model),
                                            "batched": lambda: collect(model, [CartPoleTask()], n_envs, seed=args.seed)},
                                           repeats=repeats)
                naive_rate, batched_rate = naive_steps / seconds["naive"], batched_steps / seconds["batched"]
                rows.append({"threads": threads, "policy": name, "batched_steps_played": batched_steps,
                             "naive_steps_per_s": round(naive_rate), "batched_steps_per_s": round(batched_rate),
                             "speedup": round(batched_rate / naive_rate, 1)})
    finally:
        torch.set_num_threads(all_threads)
    return {"benchmark": "rollout", "what": f"env steps per second, naive 1-env loop ({naive_steps} steps) vs "
                                            f"collect() on {n_envs} envs, best of {repeats} interleaved runs",
            "target": "speedup >= 150", "load_average_1min": _load_average(), "rows": rows}


def bench_rl(args) -> dict:
    """Wall time and environment steps until the card's SSM solves CartPole-v1, REINFORCE and PPO.

    Five seeds each (``--seed`` to ``--seed + 4``), default :class:`~ssm_metarl.rl.ReinforceConfig`
    and :class:`~ssm_metarl.rl.PPOConfig`. "Solved" means a greedy mean return >= 475 over 100
    real Gymnasium episodes; the clock includes every evaluation. Runs on one torch thread
    (the networks are tiny; ``bench rollout`` shows what a second, contended thread costs).
    Target: <= 20 s for at least 4 of 5 seeds. Chapter 2 (``02_cartpole_tasks``) explains it.
    """
    from .rl import PPOConfig, ReinforceConfig, train_ppo, train_reinforce
    from .ssm import StateSpaceModel
    from .tasks import CartPoleTask

    budget, seeds = 20.0, range(args.seed, args.seed + 5)
    algorithms = {"reinforce": (train_reinforce, ReinforceConfig(max_seconds=60.0)),
                  "ppo": (train_ppo, PPOConfig(max_seconds=60.0))}
    all_threads, runs = torch.get_num_threads(), []
    try:
        torch.set_num_threads(1)
        for seed in seeds:
            for name, (train, config) in algorithms.items():  # alternate, so load bursts hit both
                with torch.random.fork_rng():
                    torch.manual_seed(seed)
                    model = StateSpaceModel(32, 4, 4, 64)
                result = train(model, [CartPoleTask()], config, seed=seed)
                runs.append({"algorithm": name, "seed": seed, "solved": result.solved,
                             "seconds": result.solved_at_seconds and round(result.solved_at_seconds, 2),
                             "env_steps": result.solved_at_steps, "iterations": len(result.history["iteration"]),
                             "skipped_updates": result.skipped_updates,
                             "eval_mean": result.final_eval and round(result.final_eval["mean"], 1)})
    finally:
        torch.set_num_threads(all_threads)
    summary = {}
    for name in algorithms:
        mine = [r for r in runs if r["algorithm"] == name]
        solved = sorted(r["seconds"] for r in mine if r["solved"])
        steps = sorted(r["env_steps"] for r in mine if r["solved"])
        summary[name] = {"solved_within_budget": sum(s <= budget for s in solved), "seeds": len(mine),
                         "median_seconds": solved[len(solved) // 2] if solved else None,
                         "median_env_steps": steps[len(steps) // 2] if steps else None}
    return {"benchmark": "rl", "what": "seconds and env steps to a greedy mean >= 475 over 100 real Gymnasium "
                                      "episodes, card SSM (32, 4, 4, 64), CartPole-v1",
            "target": f"<= {budget:g} s for >= 4 of 5 seeds", "torch_threads": 1,
            "load_average_1min": _load_average(), "summary": summary, "runs": runs}
