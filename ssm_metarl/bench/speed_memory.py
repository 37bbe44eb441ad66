"""``python -m ssm_metarl bench memory``: chapter 7's four memories timed side by side.

Two costs decide how fast a memory policy trains on meta-CartPole: replaying a rollout
through the whole policy with gradients (PPO's update, over 3,200-step meta-episodes)
and stepping it while acting (one step for a whole batch of envs). Both are timed for
every core in turns within each round, and reported as ratios to the card's SSM. For
the diagonal SSM stack the sequence path is also run as the recurrence, one step at a
time, beside the resettable scan it trains with; and the LSTM's update runs once more
with oneDNN switched off, since torch's CPU LSTM (unlike its GRU) has a fused oneDNN
kernel. Chapter 7.
"""

from __future__ import annotations

import torch

from ..report.timing import load_average, speedup, time_rounds, torch_threads

__all__ = ["bench_memory"]

LENGTH, TRAIN_BATCH, ACT_BATCH, ACT_STEPS = 3_200, 16, 1_024, 64


def _variants(seed: int) -> dict:
    from ..models.memory import MEMORY_CORES, MemoryPolicy

    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(TRAIN_BATCH, LENGTH, 7, generator=gen)
    act_obs = torch.randn(ACT_BATCH, 7, generator=gen)
    no_prev = torch.full((ACT_BATCH,), -1, dtype=torch.long)
    policies = {core: MemoryPolicy(core, 7, seed=seed) for core in MEMORY_CORES}

    def train(policy):
        def run():
            logits, values = policy.sequence(obs)
            (logits.sum() + values.sum()).backward()

        return run

    def act(policy):
        @torch.no_grad()
        def run():
            state = policy.initial_state(ACT_BATCH)
            zero = torch.zeros(ACT_BATCH)
            for _ in range(ACT_STEPS):
                _, _, state = policy.step_with_value(act_obs, no_prev, zero, state)

        return run

    def recurrence(policy):
        def run():
            state, outputs = policy.initial_state(TRAIN_BATCH), []
            zero, none = torch.zeros(TRAIN_BATCH), torch.full((TRAIN_BATCH,), -1)
            for t in range(LENGTH):
                logits, value, state = policy.step_with_value(
                    obs[:, t], none, zero, state
                )
                outputs.append(logits.sum() + value.sum())
            torch.stack(outputs).sum().backward()

        return run

    variants = {f"train {c}": train(p) for c, p in policies.items()}
    variants |= {f"act {c}": act(p) for c, p in policies.items()}
    variants["train diag_ssm as recurrence"] = recurrence(policies["diag_ssm"])
    lstm = train(policies["lstm"])

    def lstm_without_onednn():
        with torch.backends.mkldnn.flags(enabled=False):
            lstm()

    variants["train lstm without oneDNN"] = lstm_without_onednn
    return variants


def bench_memory(args) -> dict:
    """Training (forward + backward over `TRAIN_BATCH` sequences of 3,200 steps) and
    acting (`ACT_STEPS` steps of `ACT_BATCH` envs) time of every memory, one thread,
    side by side; steps per second and ratios to the card's SSM with 95% CIs over
    rounds; the diagonal stack's scan against its recurrence (chapter 7)."""
    from ..models.memory import MEMORY_CORES

    rounds, load = getattr(args, "rounds", 5), load_average()
    with torch_threads(1):
        times = time_rounds(_variants(args.seed), rounds=rounds)
    rows = []
    for core in MEMORY_CORES:
        train, act = times[f"train {core}"], times[f"act {core}"]
        rows.append(
            {
                "core": core,
                "train_steps_per_second": TRAIN_BATCH * LENGTH / min(train),
                "act_steps_per_second": ACT_BATCH * ACT_STEPS / min(act),
                "train_vs_card": speedup(
                    times, "train card_ssm", f"train {core}"
                ).to_dict(),
                "act_vs_card": speedup(times, "act card_ssm", f"act {core}").to_dict(),
            }
        )
    scan = speedup(times, "train diag_ssm as recurrence", "train diag_ssm")
    return {
        "command": f"python -m ssm_metarl bench memory --seed {args.seed}",
        "load_average_before": load,
        "sequence_length": LENGTH,
        "train_batch": TRAIN_BATCH,
        "act_batch": ACT_BATCH,
        "rounds": rounds,
        "diag_ssm_trains_faster_than": {
            core: speedup(times, f"train {core}", "train diag_ssm").to_dict()
            for core in MEMORY_CORES
            if core != "diag_ssm"
        },
        "cores": rows,
        "diag_ssm_scan_vs_recurrence": scan.to_dict(),
        "lstm_onednn_vs_without": speedup(
            times, "train lstm without oneDNN", "train lstm"
        ).to_dict(),
    }
