"""Test-time adaptation by gradient steps: standard, and hybrid (plus replay of past
experience).

Three ways a trained policy can meet a new task, the first two here:

- `StandardAdapter`: `steps` policy-gradient steps on episodes of the new task (the
  *support* episodes), with the clipped surrogate of chapter 3: MAML's inner loop, run
  at test time;
- `HybridAdapter`: the same loss plus `experience_weight` times a *replay* loss on past
  experience (`ExperienceBuffer`). The replay loss is CLEAR's policy cloning (Rolnick et
  al. 2019): the KL divergence from the policy that played the stored episodes to the
  adapted policy, on the stored steps. It pulls the adapted policy back towards what it
  did on earlier tasks, so it targets forgetting, not the new task;
- in-context: no weight changes at all. A recurrent policy trained on many tasks (with
  every task's loss weighted equally, `ssm_metarl.rl.configs.PPOConfig.balance_tasks`)
  infers the task from what happens and acts on it: `ssm_metarl.adapt.in_context`.

Every `adapt` returns new weights and never touches the model it was given. A step that
is not finite, or that moves the weights by more than `max_update_ratio` times their
norm, is refused with a warning and that task keeps the original weights. Taught in
chapter 4 (`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..cartpole.trajectories import Trajectories
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..meta.maml_rl import policy_gradient_loss, task_batch
from ..models.policy import N_ACTIONS, SSMPolicy, TaskBatchedPolicy
from .buffer import ExperienceBuffer

__all__ = [
    "StandardAdaptationConfig",
    "HybridAdaptationConfig",
    "StandardAdapter",
    "HybridAdapter",
    "replay_kl",
    "OPTIMIZERS",
]

#: How an adapter turns gradients into steps: plain SGD (MAML's inner step) or Adam.
OPTIMIZERS = ("sgd", "adam")


@dataclass
class StandardAdaptationConfig:
    """Test-time gradient adaptation (chapter 4). The defaults are chapter 3's inner
    step."""

    lr: float = 0.01  # step size
    steps: int = 1  # policy-gradient steps, all on the same support episodes
    # "sgd" (MAML's inner step) or "adam" (per-task moments, fresh at every adapt)
    optimizer: str = "sgd"
    # PPO clip of the importance ratio (active from the second step on)
    clip: float = 0.2
    gamma: float = 0.99  # discount of the returns-to-go
    # refuse a step that moves a task's weights by more than this x their norm
    max_update_ratio: float = 1.0

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_int("steps", self.steps, minimum=0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive("clip", self.clip)
        check_unit_interval("gamma", self.gamma)
        check_positive("max_update_ratio", self.max_update_ratio)


@dataclass
class HybridAdaptationConfig(StandardAdaptationConfig):
    """`StandardAdaptationConfig` plus replay (chapter 4); the model card's defaults."""

    lr: float = 0.01
    steps: int = 10
    # weight of the replay loss beside the new task's loss (0: standard)
    experience_weight: float = 0.5
    # past episodes sampled from the buffer for each adapt (one sample, all steps)
    replay_episodes: int = 16

    def __post_init__(self):
        super().__post_init__()
        if not (self.experience_weight >= 0 and np.isfinite(self.experience_weight)):
            raise ValueError(
                "experience_weight must be a finite number >= 0, got "
                f"{self.experience_weight!r}"
            )
        check_int("replay_episodes", self.replay_episodes)


def _norms(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each task's L2 norm over all its weights: (n_tasks,)."""
    return torch.sqrt(sum(v.pow(2).flatten(1).sum(1) for v in params.values()))


def replay_kl(
    base: SSMPolicy, params: dict[str, torch.Tensor], replay: dict[str, torch.Tensor]
) -> torch.Tensor:
    r"""CLEAR's policy cloning on replayed steps, one value per task: the mean over
    stored steps of
    $\mathrm{KL}(\pi_{\text{old}}(\cdot|h_t)\,\|\,\pi_\theta(\cdot|h_t))$. With two
    actions the stored log-probability of the chosen action gives the whole old
    distribution. Zero, with a zero gradient, at the weights that played the episodes.
    Defined in chapter 4."""
    n = next(iter(params.values())).shape[0]
    expand = lambda x: x.expand(
        n, *x.shape
    )  # the same replayed episodes for every task
    logits = TaskBatchedPolicy(base, params).logits(
        expand(replay["obs"]), expand(replay["actions"]), expand(replay["rewards"])
    )
    log_p = torch.log_softmax(logits[..., :N_ACTIONS], dim=-1)
    p_chosen = replay["log_probs"].exp()
    chosen = torch.nn.functional.one_hot(replay["actions"], N_ACTIONS).to(
        p_chosen.dtype
    )
    p_old = chosen * p_chosen.unsqueeze(-1) + (1 - chosen) * (1 - p_chosen).unsqueeze(
        -1
    )
    kl = (p_old * (p_old.clamp_min(1e-12).log() - log_p)).sum(-1)
    mask = replay["mask"].to(kl.dtype)
    return (kl * mask).sum(dim=(1, 2)) / mask.sum().clamp_min(1.0)


class StandardAdapter:
    """Adapt a policy to new tasks with policy-gradient steps on their support episodes.

    `adapt(support)` treats all of `support` as ONE task and returns an adapted copy (a
    new model, or a new policy of the same kind); `adapt_tasks(support)` adapts every
    task of `support` separately at once and returns a `TaskBatchedPolicy`. Neither
    changes `model`. Defined in chapter 4 (`04_test_time_adaptation`).
    """

    def __init__(self, model, config: StandardAdaptationConfig | None = None):
        # returned by `adapt` in the same form: a model, or a policy of the same class
        self.given = model
        self.policy = model if isinstance(model, SSMPolicy) else SSMPolicy(model)
        self.config = config or StandardAdaptationConfig()
        # tasks whose adaptation the guard refused in the last call
        self.last_refused = 0

    def _extra_loss(self, params, n_tasks: int):
        return None  # the hybrid adapter adds its replay loss here

    def adapt_params(
        self, support: Trajectories, n_tasks: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Adapted weights with a leading task dimension, one slice per task of
        `support`."""
        cfg, base = self.config, self.policy
        n = len(support.tasks) if n_tasks is None else n_tasks
        start = {
            k: v.detach().expand(n, *v.shape).clone()
            for k, v in base.model.named_parameters()
        }
        batch = task_batch(base, support, n, cfg.gamma)
        loss_fn = policy_gradient_loss(base, cfg.clip)
        params = {k: v.clone() for k, v in start.items()}
        moments = {
            k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()
        }
        refused = torch.zeros(n, dtype=torch.bool)
        for step in range(cfg.steps):
            at = {k: v.detach().requires_grad_() for k, v in params.items()}
            losses = loss_fn(at, batch)
            extra = self._extra_loss(at, n)
            if extra is not None:
                losses = losses + extra
            grads = torch.autograd.grad(
                losses.sum(), list(at.values()), allow_unused=True
            )
            new = {}
            for (k, v), g in zip(params.items(), grads):
                g = torch.zeros_like(v) if g is None else g
                if cfg.optimizer == "adam":  # Adam's update, per weight (so per task)
                    m, s = moments[k]
                    m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
                    moments[k] = (m, s)
                    g = (m / (1 - 0.9 ** (step + 1))) / (
                        (s / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8
                    )
                new[k] = v - cfg.lr * g
            with torch.no_grad():
                moved = _norms({k: new[k] - params[k] for k in params})
                bad = (
                    ~torch.isfinite(losses.detach())
                    | ~torch.isfinite(moved)
                    | (moved > cfg.max_update_ratio * _norms(params).clamp_min(1e-8))
                )
            refused |= bad
            params = {
                k: torch.where(
                    refused.view(-1, *([1] * (v.dim() - 1))), start[k], new[k].detach()
                )
                for k, v in new.items()
            }
        self.last_refused = int(refused.sum())
        if self.last_refused:
            warnings.warn(
                f"adaptation refused on {self.last_refused} of {n} task(s): a step was "
                "not finite or moved the "
                f"weights by more than {cfg.max_update_ratio} x their norm "
                f"(lr={cfg.lr} is too large?); "
                "those tasks keep the original weights",
                RuntimeWarning,
                stacklevel=2,
            )
        return params

    def adapt_tasks(self, support: Trajectories) -> TaskBatchedPolicy:
        """Every task of `support` adapted on its own episodes, as one task-batched
        policy."""
        return TaskBatchedPolicy(self.policy, self.adapt_params(support))

    def adapt(self, support: Trajectories):
        """An adapted copy of the model (or policy) for the one task that played
        `support`."""
        params = self.adapt_params(support, n_tasks=1)
        model = copy.deepcopy(self.policy.model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name][0])
        return type(self.given)(model) if isinstance(self.given, SSMPolicy) else model


class HybridAdapter(StandardAdapter):
    """`StandardAdapter` plus `experience_weight` x `replay_kl` on episodes from
    `experience_buffer`.

    One sample of `replay_episodes` past episodes is drawn per `adapt` call (seeded by
    the buffer) and replayed at every step. Defined in chapter 4
    (`04_test_time_adaptation`).
    """

    def __init__(
        self,
        model,
        config: HybridAdaptationConfig | None = None,
        experience_buffer: ExperienceBuffer | None = None,
    ):
        super().__init__(model, config or HybridAdaptationConfig())
        if not isinstance(experience_buffer, ExperienceBuffer):
            raise ValueError(
                "HybridAdapter needs an ExperienceBuffer of past episodes "
                "(experience_buffer=...)"
            )
        self.buffer = experience_buffer
        self._replay = None

    def adapt_params(
        self, support: Trajectories, n_tasks: int | None = None
    ) -> dict[str, torch.Tensor]:
        self._replay = (
            self.buffer.sample(self.config.replay_episodes)
            if self.config.experience_weight > 0
            else None
        )
        return super().adapt_params(support, n_tasks)

    def _extra_loss(self, params, n_tasks: int):
        if self._replay is None:
            return None
        return self.config.experience_weight * replay_kl(
            self.policy, params, self._replay
        )
