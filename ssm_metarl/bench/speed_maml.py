"""``python -m ssm_metarl bench maml``: chapter 3's MAML-RL meta-gradient, all tasks in
one batched graph against a loop over tasks.

One meta-gradient of the card's SSM, computed three ways that give the same numbers:
hand-written batched matmuls (what training uses), ``vmap`` over the one-task loss, and
a Python loop over tasks. The registry of benchmarks is :mod:`ssm_metarl.bench.speed`.
Taught in chapter 3 (``03_maml``).
"""

from __future__ import annotations

import torch

from ..report.timing import load_average, speedup, time_rounds, torch_threads

__all__ = ["bench_maml"]


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
    g = torch.Generator().manual_seed(args.seed)
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
        "load_average_1min": load_average(),
        "rows": rows,
    }
