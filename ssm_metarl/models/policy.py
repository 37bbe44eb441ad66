"""The policy interface that rollouts, losses and MAML rely on, and its implementations.

A `Policy` has four parts:

- `initial_state(batch_size)`: the recurrent state at the start of an episode;
- `step(obs, prev_action, prev_reward, state) -> (logits, state)`: one step while
  acting. `ssm_metarl.cartpole.rollout.collect` passes every policy the previous action
  (-1 at the first step) and the previous reward (0 at the first step); most policies
  ignore them;
- `logits(obs, actions, rewards)`: the logits of a stored trajectory (..., T, >=2) by
  teacher forcing: the same inputs as while acting, all steps at once, differentiable;
- greedy or sampled actions from logits: `select_actions` (shared by all policies).

Implementations: `LinearPolicy` (a fixed rule), `SSMPolicy` (the card's model on
observations), `RL2Policy` (the model on observation + previous action + previous
reward), and `TaskBatchedPolicy` (any of the SSM policies with per-task weights, a
leading task dimension). A new kind of policy is one new class here.
Taught in chapter 2 (`book/02_cartpole_tasks.md`); task batching in chapter 3.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

__all__ = [
    "Policy",
    "LinearPolicy",
    "SSMPolicy",
    "RL2Policy",
    "TaskBatchedPolicy",
    "CallablePolicy",
    "as_policy",
    "select_actions",
    "action_log_probs",
    "policy_log_probs",
    "previous",
    "N_ACTIONS",
]

# CartPole: push left (0) or right (1); a policy's logits are outputs[..., :2]
N_ACTIONS = 2
Params = dict[str, torch.Tensor]


@runtime_checkable
class Policy(Protocol):
    """What `ssm_metarl.cartpole.rollout.collect`, the losses and MAML need of a policy
    (chapter 2)."""

    def initial_state(self, batch_size: int) -> torch.Tensor: ...

    def step(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def logits(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> torch.Tensor: ...


def previous(
    actions: torch.Tensor, rewards: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a policy saw as "previous action and reward" at each stored step (..., T):
    the values one step earlier, with -1 and 0 at the first step, exactly as `collect`
    feeds them. Defined in chapter 2 (`02_cartpole_tasks`); the RL^2 policy of chapter 4
    reads them."""
    prev_action = torch.cat(
        [torch.full_like(actions[..., :1], -1), actions[..., :-1]], dim=-1
    )
    prev_reward = torch.cat(
        [torch.zeros_like(rewards[..., :1]), rewards[..., :-1]], dim=-1
    )
    return prev_action, prev_reward


class LinearPolicy:
    """A fixed rule: push right when `weights · (obs - offset) > 0`. It has no hidden
    state.

    `LinearPolicy([0, 0, 1, 0.5])` is the rule a = [θ + 0.5 θ̇ > 0]. `offset` (4,) or
    (N, 4) shifts the observation, e.g. by a known goal position for an oracle.
    `LinearPolicy(None)` outputs zero logits: the uniformly random policy (when actions
    are sampled). Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, weights=None, offset=None, sharpness: float = 1e3):
        self.weights = (
            None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        )
        self.offset = (
            None if offset is None else torch.as_tensor(offset, dtype=torch.float32)
        )
        # large: sampling agrees with the argmax almost surely
        self.sharpness = sharpness

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 0)

    def _logits(self, obs: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return obs.new_zeros(*obs.shape[:-1], N_ACTIONS)
        x = (
            obs
            if self.offset is None
            else obs
            - (
                self.offset
                if self.offset.dim() < 2 or obs.dim() == 2
                else self.offset.unsqueeze(-2)
            )
        )
        score = self.sharpness * (x @ self.weights)
        return torch.stack([torch.zeros_like(score), score], dim=-1)

    def step(self, obs, prev_action, prev_reward, state):
        return self._logits(obs), state

    def logits(self, obs, actions, rewards):
        return self._logits(obs)

    def __call__(
        self, obs: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chapter 2 form `policy(obs, hidden) -> (logits, hidden)`."""
        return self._logits(obs), hidden


class SSMPolicy:
    """A recurrent policy on a sequence model (the card's `ssm_metarl.StateSpaceModel`):
    its first two outputs are the action logits, its input is the observation.

    The model needs `init_hidden`, `step(x, h, params)` and
    `outputs(xs, params, hidden)`. `params`: functional weights (e.g. MAML's adapted
    ones) instead of the module's own. Subclasses change only `inputs`. Defined in
    chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, model, params: Params | None = None):
        self.model, self.params = model, params

    def parameters(self):
        """The model's parameters (what the training loops optimise)."""
        return self.model.parameters()

    def inputs(
        self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> torch.Tensor:
        """The model's input at each step, from what the policy sees (any leading
        dims)."""
        return obs

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.model.init_hidden(batch_size)

    def step(self, obs, prev_action, prev_reward, state):
        return self.model.step(
            self.inputs(obs, prev_action, prev_reward), state, self.params
        )

    def logits(self, obs, actions, rewards):
        return self.model.outputs(
            self.inputs(obs, *previous(actions, rewards)), self.params
        )[0]


class RL2Policy(SSMPolicy):
    """An RL^2-style policy (Duan et al. 2016): the model's input is the observation,
    the previous action one-hot (zeros at the first step) and the previous reward:
    4 + 2 + 1 = 7 numbers, so the hidden state can infer the task from the rewards.
    Needs a model with `input_dim=7`. Defined in chapter 4 (`04_test_time_adaptation`).
    """

    def inputs(self, obs, prev_action, prev_reward):
        one_hot = (
            prev_action.unsqueeze(-1) == torch.arange(N_ACTIONS, device=obs.device)
        ).to(obs.dtype)
        return torch.cat(
            [obs, one_hot, prev_reward.unsqueeze(-1).to(obs.dtype)], dim=-1
        )


class TaskBatchedPolicy:
    """`base` (an `SSMPolicy` or a subclass) with its own weights for each task:
    `params` carry a leading task dimension n. Episodes are task-major, as `collect`
    lays them out (episode i plays task i // (N / n)); every task's weights run on its
    episodes as batched matmuls. Defined in chapter 3 (`03_maml`).
    """

    def __init__(self, base: SSMPolicy, params: Params):
        self.base, self.params = base, params
        self.n_tasks = next(iter(params.values())).shape[0]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.n_tasks:
            raise ValueError(
                f"{x.shape[0]} episodes do not split evenly over {self.n_tasks} tasks; "
                "collect the same number of episodes for every task"
            )
        return x.reshape(self.n_tasks, x.shape[0] // self.n_tasks, *x.shape[1:])

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.base.initial_state(batch_size)

    def step(self, obs, prev_action, prev_reward, state):
        x = self._split(self.base.inputs(obs, prev_action, prev_reward))
        y, h = self.base.model.step(x, self._split(state), self.params)
        return y.flatten(0, 1), h.flatten(0, 1)

    def logits(self, obs, actions, rewards):
        x = self.base.inputs(obs, *previous(actions, rewards))
        flat = x.dim() == 3  # (N, T, D) as collected, not yet (n, E, T, D)
        y = self.base.model.outputs(self._split(x) if flat else x, self.params)[0]
        return y.flatten(0, 1) if flat else y


class CallablePolicy:
    """Any function `f(obs, hidden) -> (outputs, hidden)` with a start state: a module
    that is not a sequence model, or a closure. Teacher forcing runs it step by step.
    Defined in chapter 2."""

    def __init__(self, fn: Callable, init_hidden):
        self.fn, self.init_hidden = fn, init_hidden

    def initial_state(self, batch_size: int) -> torch.Tensor:
        hidden = (
            self.init_hidden(batch_size)
            if callable(self.init_hidden)
            else self.init_hidden
        )
        if not isinstance(hidden, torch.Tensor) or hidden.shape[0] != batch_size:
            raise ValueError(
                f"init_hidden must give a tensor with {batch_size} rows, got "
                f"{getattr(hidden, 'shape', hidden)}"
            )
        return hidden

    def step(self, obs, prev_action, prev_reward, state):
        return self.fn(obs, state)

    def logits(self, obs, actions, rewards):
        hidden, outputs = self.initial_state(obs.shape[0]), []
        for x in obs.unbind(dim=1):
            y, hidden = self.fn(x, hidden)
            outputs.append(y)
        return torch.stack(outputs, dim=1)


def as_policy(policy, init_hidden=None) -> Policy:
    """`policy` as a `Policy`: a Policy as it is, a sequence model (`step`, `outputs`,
    `init_hidden`, like `ssm_metarl.StateSpaceModel`) as an `SSMPolicy`, any other
    callable `f(obs, hidden)` as a `CallablePolicy` starting from `init_hidden` (a
    tensor or a function of the batch size; default `policy.init_hidden`). Defined in
    chapter 2."""
    if init_hidden is None and isinstance(policy, Policy):
        return policy
    if init_hidden is None and all(
        hasattr(policy, a) for a in ("step", "outputs", "init_hidden")
    ):
        return SSMPolicy(policy)
    if init_hidden is None:
        if not hasattr(policy, "init_hidden"):
            raise ValueError(
                "policy has no init_hidden(batch_size); pass init_hidden= (a tensor or "
                "a callable)"
            )
        init_hidden = policy.init_hidden
    return CallablePolicy(policy, init_hidden)


def select_actions(
    outputs: torch.Tensor, greedy: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Actions from the logits `outputs[:, :2]`: argmax when `greedy`, else a
    Categorical sample.

    With two actions a Categorical sample is a Bernoulli draw with
    `P(right) = sigmoid(l1 - l0)`, which is cheaper than `torch.multinomial` and takes a
    seeded generator. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    if outputs.dim() != 2 or outputs.shape[1] < N_ACTIONS:
        raise ValueError(
            f"policy outputs must have shape (N, >={N_ACTIONS}), got "
            f"{tuple(outputs.shape)}"
        )
    logits = outputs[:, :N_ACTIONS]
    if greedy:
        return logits.argmax(dim=1)
    p_right = torch.sigmoid(logits[:, 1] - logits[:, 0])
    return (torch.rand(p_right.shape, generator=generator) < p_right).long()


def action_log_probs(
    outputs: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of `actions` (..., T) and entropies under
    Categorical(logits=outputs[..., :2]).

    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    log_p = torch.log_softmax(outputs[..., :N_ACTIONS], dim=-1)
    chosen = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return chosen, entropy


def policy_log_probs(
    policy, traj, init_hidden=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable (log_probs, entropy), each (N, T), of the actions stored in
    `traj`, by teacher forcing: the policy runs over the stored steps with the inputs it
    had while acting. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    if traj.obs.dim() != 3:
        raise ValueError(
            f"obs must have shape (N, T, obs_dim), got {tuple(traj.obs.shape)}"
        )
    return action_log_probs(
        as_policy(policy, init_hidden).logits(traj.obs, traj.actions, traj.rewards),
        traj.actions,
    )
