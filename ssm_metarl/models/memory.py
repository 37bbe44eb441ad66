"""Chapter 7's recurrent actor-critic policy with a choice of memory, at equal size.

Why: chapter 7 asks which memory serves in-context reinforcement learning, so all but
the memory is held fixed: one input projection, one actor and one critic head, one
parameter budget (the card's 6,744). Between projection and heads sits one of four
cores: the card's `StateSpaceModel` (a nonlinear recurrent cell), a diagonal linear SSM
stack trained through a resettable parallel scan (`diagonal_stack`), a GRU or an LSTM
(`torch.nn`). A `MemoryPolicy` is a `Policy` (chapter 2's interface), so `collect`,
`policy_log_probs` and the losses run it unchanged; `sequence` and `step_with_value`
add the critic's value that PPO needs at every step.

Widths that `memory_width` picks for the 6,744 budget (input 7: meta-CartPole's
observation, or RL^2's 4 + 2 + 1; input 6 for comparison), with the state size a row
carries (float32 numbers):

========  ==============  ==============  ===========
core      input 7         input 6         state size
========  ==============  ==============  ===========
card_ssm  25: 6,728       25: 6,703       width
diag_ssm  28: 6,919       28: 6,891       4 x width
gru       32: 6,691       32: 6,659       width
lstm      28: 6,807       28: 6,779       2 x width
========  ==============  ==============  ===========
"""

from __future__ import annotations

import torch
from torch import nn

from ..io.validation import check_choice, check_int, check_model_input
from .memory_cores import MEMORY_CORES, memory_core
from .policy import N_ACTIONS, previous

__all__ = [
    "MEMORY_CORES",
    "MEMORY_INPUTS",
    "MemoryPolicy",
    "memory_width",
    "memory_parameter_count",
]

#: What a policy reads: the observation alone, or RL^2's observation + previous action
#: one-hot + previous reward (as `RL2Policy`, chapter 4).
MEMORY_INPUTS = ("obs", "rl2")
RL2_EXTRA = N_ACTIONS + 1  # the numbers RL^2 adds to the observation
DIAG_LAYERS = 2  # default depth of the diagonal SSM stack
TOLERANCE = 0.05  # how far from the budget `memory_width` may land
MAX_WIDTH = 4096  # `memory_width` stops searching here rather than exhaust memory


class MemoryPolicy(nn.Module):
    """Chapter 7's recurrent actor-critic: input projection -> memory core -> actor
    and critic heads.

    `core` is one of `MEMORY_CORES`; `input_dim` the size of what the projection reads:
    the observation for `inputs="obs"`, the observation + 3 for `inputs="rl2"` (previous
    action one-hot and previous reward, built as `RL2Policy` builds them, chapter 4).
    `width=None` picks the width that brings the parameter count closest to
    `target_params` (`memory_width`). `layers` sets the depth of the `"diag_ssm"` stack
    (default 2) and is an error for the other cores. The weights depend on `seed` only.

    As a `Policy` (chapter 2): `initial_state`, `step`, `logits`. For PPO:
    `step_with_value` (one step, with the value) and `sequence` (a whole batch of
    sequences, both heads). Every core starts from the zero state; `resets` marks the
    steps where a new episode starts inside a row: the state restarts there, and with
    RL^2 inputs the previous action and reward restart too (-1 and 0, as `collect`
    feeds a fresh episode). `"diag_ssm"` runs a sequence as one parallel scan per layer,
    the other cores step through time. Defined in chapter 7.
    """

    def __init__(
        self,
        core: str,
        input_dim: int,
        width: int | None = None,
        target_params: int = 6744,
        inputs: str = "obs",
        seed: int = 0,
        layers: int | None = None,
    ):
        super().__init__()
        check_choice("core", core, MEMORY_CORES)
        check_choice("inputs", inputs, MEMORY_INPUTS)
        input_dim = check_int("input_dim", input_dim)
        if inputs == "rl2" and input_dim <= RL2_EXTRA:
            raise ValueError(
                f"inputs='rl2' needs input_dim = obs_dim + {RL2_EXTRA} (previous "
                f"action one-hot and reward), so more than {RL2_EXTRA}; got {input_dim}"
            )
        if layers is not None and core != "diag_ssm":
            raise ValueError(f"layers applies to core='diag_ssm' only, not {core!r}")
        if width is None:
            width = memory_width(core, input_dim, target_params, layers)
        layers = DIAG_LAYERS if layers is None else check_int("layers", layers)
        width, seed = check_int("width", width), check_int("seed", seed, minimum=0)
        self.core_name, self.inputs = core, inputs
        self.input_dim, self.width = input_dim, width
        self.obs_dim = input_dim - (RL2_EXTRA if inputs == "rl2" else 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.project = nn.Linear(input_dim, width)
            # the core's own seed, drawn so that its weights do not repeat the
            # projection's random numbers
            core_seed = int(torch.randint(0, 2**31 - 1, ()))
            self.core = memory_core(core, width, layers, core_seed)
            self.actor, self.critic = nn.Linear(width, N_ACTIONS), nn.Linear(width, 1)
            # CleanRL's PPO init: a near-uniform first policy, a unit-scale critic
            for head, gain in ((self.actor, 0.01), (self.critic, 1.0)):
                nn.init.orthogonal_(head.weight, gain)
                nn.init.zeros_(head.bias)
        self.state_size = self.core.state_size

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The zero state, (batch_size, state_size) float32 (chapter 7)."""
        weight = self.project.weight
        return weight.new_zeros(check_int("batch_size", batch_size), self.state_size)

    def _features(self, obs, prev_action, prev_reward):
        """The projection's input; RL^2's as `RL2Policy.inputs` builds it."""
        if self.inputs == "obs":
            return obs
        one_hot = (
            prev_action.unsqueeze(-1) == torch.arange(N_ACTIONS, device=obs.device)
        ).to(obs.dtype)
        return torch.cat(
            [obs, one_hot, prev_reward.unsqueeze(-1).to(obs.dtype)], dim=-1
        )

    def _check(self, name, x, shape, expected, dtype=None):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(shape):
            raise ValueError(
                f"{name} must have shape {expected} = {tuple(shape)}, got "
                f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}"
            )
        if dtype is not None and x.dtype != dtype:
            raise ValueError(f"{name} must have dtype {dtype}, got {x.dtype}")

    def step_with_value(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        state: torch.Tensor,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step while acting: `obs` (B, obs_dim), `prev_action` (B,) int,
        `prev_reward` (B,), `state` (B, state_size) -> (logits (B, 2), values (B,),
        next state). `resets` (B,) bool restarts those rows first (chapter 7)."""
        shape = f"(B, {self.obs_dim})"
        check_model_input("obs", obs, self.project.weight, shape)
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape {shape}, got {tuple(obs.shape)}")
        batch = obs.shape[0]
        self._check("state", state, (batch, self.state_size), "(B, state_size)")
        if self.inputs == "rl2":
            self._check("prev_action", prev_action, (batch,), "(B,)")
            self._check("prev_reward", prev_reward, (batch,), "(B,)")
        if resets is not None:
            self._check("resets", resets, (batch,), "(B,)", torch.bool)
            state = state.masked_fill(resets[:, None], 0.0)
            if self.inputs == "rl2":
                prev_action = prev_action.masked_fill(resets, -1)
                prev_reward = prev_reward.masked_fill(resets, 0.0)
        x = self.project(self._features(obs, prev_action, prev_reward))
        y, state = self.core.step(x, state)
        return self.actor(y), self.critic(y)[:, 0], state

    def step(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step_with_value` without the value: the `Policy` step (chapter 7)."""
        logits, _, state = self.step_with_value(obs, prev_action, prev_reward, state)
        return logits, state

    def sequence(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor | None = None,
        rewards: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        prev_action: torch.Tensor | None = None,
        prev_reward: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads over stored sequences by teacher forcing: `obs` (..., T, obs_dim),
        `actions` and `rewards` (..., T) (needed for RL^2 inputs only), `resets`
        (..., T) bool -> (logits (..., T, 2), values (..., T)). Chapter 7.

        A row starts like an episode: from the zero state and, with RL^2 inputs, after
        action -1 and reward 0. To continue rows cut out of longer ones (truncated
        backpropagation), pass the `state` (N, state_size) that acting reached before
        their first step, and for RL^2 the `prev_action` and `prev_reward` (...,) seen
        there.
        """
        shape = f"(..., T, {self.obs_dim})"
        check_model_input("obs", obs, self.project.weight, shape)
        if obs.dim() < 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have shape {shape}, got {tuple(obs.shape)}")
        lead, steps = obs.shape[:-2], obs.shape[-2]
        for name, x in (("actions", actions), ("rewards", rewards)):
            if x is not None or self.inputs == "rl2":
                self._check(name, x, obs.shape[:-1], "obs.shape[:-1]")
        if resets is not None:
            self._check("resets", resets, obs.shape[:-1], "obs.shape[:-1]", torch.bool)
            resets = resets.reshape(-1, steps)
        obs = obs.reshape(-1, steps, self.obs_dim)
        if state is not None:
            self._check("state", state, (obs.shape[0], self.state_size), "(N, size)")
        before = {"prev_action": prev_action, "prev_reward": prev_reward}
        prev_action = prev_reward = None
        if self.inputs == "rl2":
            prev = dict(zip(before, previous(actions, rewards)))
            for name, first in before.items():
                if first is not None:
                    self._check(name, first, lead, "obs.shape[:-2]")
                    prev[name] = torch.cat([first[..., None], prev[name][..., 1:]], -1)
            prev_action, prev_reward = (p.reshape(-1, steps) for p in prev.values())
            if resets is not None:
                prev_action = prev_action.masked_fill(resets, -1)
                prev_reward = prev_reward.masked_fill(resets, 0.0)
        x = self.project(self._features(obs, prev_action, prev_reward))
        y, _ = self.core.run(x, state, resets)
        return (
            self.actor(y).reshape(*lead, steps, N_ACTIONS),
            self.critic(y).reshape(*lead, steps),
        )

    def logits(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> torch.Tensor:
        """The `Policy` teacher-forced logits (..., T, 2): `sequence`'s first head
        (chapter 7)."""
        return self.sequence(obs, actions, rewards)[0]


def memory_parameter_count(
    core: str, input_dim: int, width: int, layers: int | None = None
) -> int:
    """The number of parameters of `MemoryPolicy(core, input_dim, width, layers=...)`,
    counted on a built policy (chapter 7)."""
    policy = MemoryPolicy(core, input_dim, width, layers=layers)
    return sum(p.numel() for p in policy.parameters())


def memory_width(
    core: str,
    input_dim: int,
    target_params: int = 6744,
    layers: int | None = None,
) -> int:
    """The width whose `MemoryPolicy` has the parameter count nearest `target_params`
    (the smaller width on a tie); a ValueError if even that one misses by more than 5%.

    The count grows with the width, so a doubling search and a bisection find the
    first width at or above the target; the answer is it or the one below. Sizes it
    picks are in the module docstring. Defined in chapter 7.
    """
    check_choice("core", core, MEMORY_CORES)
    target = check_int("target_params", target_params)
    count = {}

    def params(w: int) -> int:
        if w not in count:
            count[w] = memory_parameter_count(core, input_dim, w, layers)
        return count[w]

    high = 1
    while params(high) < target:
        if high >= MAX_WIDTH:
            raise ValueError(
                f"target_params={target} needs a width over {MAX_WIDTH} for core "
                f"{core!r}; pass a smaller target_params"
            )
        high *= 2
    low = high // 2  # params(low) < target <= params(high), or high == 1
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if params(mid) < target else (low, mid)
    best = min(
        (w for w in (high - 1, high) if w >= 1), key=lambda w: abs(params(w) - target)
    )
    if abs(params(best) - target) > TOLERANCE * target:
        raise ValueError(
            f"no width brings core {core!r} within {TOLERANCE:.0%} of target_params="
            f"{target}: width {best} gives {params(best)}; change target_params"
        )
    return best
