"""The experience buffer: past episodes kept for replay, first in first out, sampled
with a seed.

The hybrid adapter (`ssm_metarl.adapt.adapters.HybridAdapter`) replays episodes from it
so that adapting to a new task does not forget the old ones. Taught in chapter 4
(`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

from collections import deque

import torch

from ..cartpole.trajectories import Trajectories
from ..io.validation import check_int

__all__ = ["ExperienceBuffer"]


class ExperienceBuffer:
    """A bounded store of past episodes (first in, first out) with seeded sampling.

    `add(traj)` stores every episode of a `Trajectories`
    batch: its observations, actions, rewards and the acting policy's log-probabilities.
    When full, the oldest episodes go. `sample(n, seed)` returns `n` distinct episodes
    as one padded batch; the same seed gives the same episodes. Defined in chapter 4
    (`04_test_time_adaptation`).
    """

    def __init__(self, capacity: int = 256, seed: int = 0):
        self.capacity = check_int("capacity", capacity)
        self.episodes: deque = deque(maxlen=self.capacity)
        self.obs_dim: int | None = None
        self.added = 0  # episodes ever added (the buffer keeps the last `capacity`)
        self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, traj: Trajectories) -> None:
        if not isinstance(traj, Trajectories):
            raise TypeError(
                "ExperienceBuffer.add takes a Trajectories batch (from collect), got "
                f"{type(traj).__name__}"
            )
        obs_dim = traj.obs.shape[-1]
        if self.obs_dim is not None and obs_dim != self.obs_dim:
            raise ValueError(
                f"the buffer holds observations of size {self.obs_dim}, got {obs_dim}; "
                "use one buffer per observation space"
            )
        shapes = {
            tuple(t.shape[:2])
            for t in (traj.actions, traj.rewards, traj.mask, traj.log_probs)
        }
        if shapes != {tuple(traj.obs.shape[:2])}:
            raise ValueError(
                "episode tensors disagree on (episodes, steps): obs "
                f"{tuple(traj.obs.shape[:2])}, "
                f"others {sorted(shapes)}"
            )
        self.obs_dim = obs_dim
        for i, length in enumerate(traj.lengths.tolist()):
            self.episodes.append(
                (
                    traj.obs[i, :length],
                    traj.actions[i, :length],
                    traj.rewards[i, :length],
                    traj.log_probs[i, :length],
                )
            )
            self.added += 1

    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """`n` distinct stored episodes, padded: obs (n, T, D), actions, rewards,
        log_probs, mask (n, T)."""
        n = check_int("n", n)
        if n > len(self):
            raise ValueError(
                f"cannot sample {n} episodes from a buffer holding {len(self)}; add "
                "more or ask for fewer"
            )
        generator = (
            self._generator
            if seed is None
            else torch.Generator().manual_seed(int(seed))
        )
        picked = [
            self.episodes[i]
            for i in torch.randperm(len(self), generator=generator)[:n].tolist()
        ]
        steps = max(e[0].shape[0] for e in picked)

        def pad(k):
            return torch.nn.utils.rnn.pad_sequence(
                [e[k] for e in picked], batch_first=True
            )

        mask = (
            torch.arange(steps) < torch.tensor([e[0].shape[0] for e in picked])[:, None]
        )
        return {
            "obs": pad(0),
            "actions": pad(1),
            "rewards": pad(2),
            "log_probs": pad(3),
            "mask": mask,
        }
