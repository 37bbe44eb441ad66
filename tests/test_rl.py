"""Policy-gradient building blocks of chapter 2: returns, GAE, losses, the update guard, training."""
import math

import pytest
import torch

from ssm_metarl import StateSpaceModel
from ssm_metarl.rl import batches, loops
from ssm_metarl.rl.configs import PPOConfig, ReinforceConfig
from ssm_metarl.rl.loops import train_ppo, train_reinforce
from ssm_metarl.models.policy import action_log_probs
from ssm_metarl.rl.losses import (UpdateGuard, batch_baseline, discounted_returns, gae, masked_mean,
                           normalize_advantages, ppo_clip_loss, reinforce_loss, task_means)
from ssm_metarl.cartpole.tasks import CartPoleTask, get_family




REWARDS = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, True, False], [True, False, False, False]])


def test_discounted_returns_by_hand():
    returns = discounted_returns(REWARDS, MASK, gamma=0.5)
    torch.testing.assert_close(returns, torch.tensor([[1.75, 1.5, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(discounted_returns(REWARDS, MASK, gamma=1.0)[0, 0], torch.tensor(3.0))
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(REWARDS, MASK, gamma=1.5)


def test_gae_limits():
    values = torch.tensor([[0.5, 0.2, -0.3, 9.0], [1.0, 9.0, 9.0, 9.0]])  # padding values must be ignored
    gamma = 0.9
    mc = gae(REWARDS, values, MASK, gamma, lam=1.0)
    torch.testing.assert_close(mc, (discounted_returns(REWARDS, MASK, gamma) - values) * MASK)
    td = gae(REWARDS, values, MASK, gamma, lam=0.0)
    v = values * MASK
    next_v = torch.cat([v[:, 1:], torch.zeros(2, 1)], dim=1)
    torch.testing.assert_close(td, (REWARDS + gamma * next_v - v) * MASK)


def test_batch_baseline_and_normalisation():
    returns = torch.tensor([[3.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    torch.testing.assert_close(batch_baseline(returns, mask), torch.tensor([[4.0, 2.0, 1.0], [4.0, 0.0, 0.0]]))
    adv = normalize_advantages(returns, mask)
    assert abs(float(masked_mean(adv, mask))) < 1e-6
    assert float(masked_mean(adv ** 2, mask)) == pytest.approx(1.0, abs=1e-5)
    assert float(adv[1, 1]) == 0.0


def _toy_log_probs():
    logits = torch.zeros(2, 4, 2, requires_grad=True)
    actions = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]])
    return logits, action_log_probs(logits, actions)[0]


def test_reinforce_and_ppo_gradients():
    advantages = torch.tensor([[1.0, -2.0, 0.5, 7.0], [3.0, 7.0, 7.0, 7.0]])
    logits, log_probs = _toy_log_probs()
    reinforce_loss(log_probs, advantages, MASK).backward()
    g_reinforce = logits.grad.clone()
    assert torch.all(g_reinforce[~MASK] == 0)  # padding contributes nothing
    # At ratio 1 (new == old policy) PPO's gradient equals REINFORCE's.
    logits, log_probs = _toy_log_probs()
    ppo_clip_loss(log_probs, log_probs.detach(), advantages, MASK, clip=0.2).backward()
    torch.testing.assert_close(logits.grad, g_reinforce)
    # Past the clip in the direction of the advantage, the gradient vanishes.
    logits, log_probs = _toy_log_probs()
    old = log_probs.detach() - 0.5  # ratio = e^0.5 > 1.2
    ppo_clip_loss(log_probs, old, advantages.abs(), MASK, clip=0.2).backward()
    assert torch.all(logits.grad == 0)


def test_update_guard_skips_and_counts_non_finite_updates():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    guard = UpdateGuard(max_grad_norm=1.0)
    assert not guard.step(opt, (w * float("nan")).sum(), [w])
    z = torch.nn.Parameter(torch.zeros(1))  # a finite loss whose gradient is infinite: d sqrt(z)/dz at 0
    assert not guard.step(torch.optim.SGD([z], lr=0.1), z.sqrt().sum(), [z])
    assert guard.skipped == 2 and torch.equal(w.detach(), torch.ones(3)) and torch.equal(z.detach(), torch.zeros(1))
    assert guard.step(opt, (100 * w).sum(), [w])  # gradient norm 173 clipped to 1
    assert guard.applied == 1 and guard.last_grad_norm == pytest.approx(100 * math.sqrt(3), rel=1e-5)
    torch.testing.assert_close(w.detach(), torch.ones(3) - 0.1 / math.sqrt(3))


def test_reinforce_and_ppo_improve_the_ssm_policy():
    for train, config in ((train_reinforce, ReinforceConfig(max_iters=12, target_return=None)),
                          (train_ppo, PPOConfig(max_iters=8, target_return=None))):
        torch.manual_seed(0)
        model = StateSpaceModel(32, 4, 4, 64)
        result = train(model, [CartPoleTask()], config, seed=0)
        returns = result.history["mean_return"]
        assert len(returns) == config.max_iters and result.skipped_updates == 0
        assert sum(returns[-3:]) / 3 > 1.5 * sum(returns[:3]) / 3, f"{result.algorithm} did not learn: {returns}"
        assert result.history["env_steps"] == sorted(result.history["env_steps"])
        # every iteration took its policy step(s): REINFORCE one, PPO one per epoch
        assert result.applied_updates == config.max_iters * getattr(config, "epochs", 1)


def test_training_is_reproducible_and_validates_config():
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = StateSpaceModel(32, 4, 4, 64)
        runs.append(train_reinforce(model, [CartPoleTask()], ReinforceConfig(max_iters=3, target_return=None,
                                                                              baseline="learned"), seed=3))
    assert runs[0].history["mean_return"] == runs[1].history["mean_return"]
    for bad in ({"baseline": "mean"}, {"lr": 0.0}, {"gamma": 1.5}, {"episodes_per_iter": 0}, {"critic_lr": -1.0},
                {"max_seconds": 0}, {"eval_episodes": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReinforceConfig(**bad)
    with pytest.raises(ValueError, match="clip"):
        PPOConfig(clip=-0.1)


# -- balanced over tasks ------------------------------------------------------------------------
# Two tasks, two episodes each (task-major). Task 0 played 4 + 4 steps, task 1 only 1 + 1.
BAL_MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
BAL_X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0], [10.0, 5.0, 5.0, 5.0], [20.0, 5.0, 5.0, 5.0]])


def test_masked_mean_balanced_weighs_tasks_not_steps():
    unbalanced = masked_mean(BAL_X, BAL_MASK)  # (16 + 10 + 20) / 10 steps
    balanced = masked_mean(BAL_X, BAL_MASK, n_tasks=2)  # (mean of task 0 = 2, mean of task 1 = 15) / 2
    assert float(unbalanced) == pytest.approx(4.6)
    assert float(balanced) == pytest.approx(8.5)
    torch.testing.assert_close(task_means(BAL_X.reshape(2, 2, 4), BAL_MASK.reshape(2, 2, 4)), torch.tensor([2.0, 15.0]))
    # equal step counts per task: the two agree
    even = torch.ones_like(BAL_MASK)
    assert float(masked_mean(BAL_X, even, n_tasks=2)) == pytest.approx(float(masked_mean(BAL_X, even)))
    with pytest.raises(ValueError, match="split evenly"):
        masked_mean(BAL_X, BAL_MASK, n_tasks=3)


def test_normalize_advantages_per_task_and_balanced_losses():
    adv = normalize_advantages(BAL_X, BAL_MASK, n_tasks=2)
    for k in range(2):
        a, m = adv[2 * k:2 * k + 2], BAL_MASK[2 * k:2 * k + 2]
        assert abs(float(masked_mean(a, m))) < 1e-5 and float(masked_mean(a ** 2, m)) == pytest.approx(1.0, abs=1e-4)
    whole = normalize_advantages(BAL_X, BAL_MASK)
    assert not torch.allclose(whole, adv)  # over the batch, task 1's large values set everyone's scale
    log_probs = torch.randn(4, 4)
    torch.testing.assert_close(reinforce_loss(log_probs, adv, BAL_MASK, n_tasks=2),
                               -0.5 * sum(masked_mean(log_probs[2 * k:2 * k + 2] * adv[2 * k:2 * k + 2],
                                                      BAL_MASK[2 * k:2 * k + 2]) for k in range(2)))
    assert not torch.allclose(reinforce_loss(log_probs, adv, BAL_MASK, n_tasks=2), reinforce_loss(log_probs, adv, BAL_MASK))
    old = log_probs - 0.1
    torch.testing.assert_close(ppo_clip_loss(log_probs, old, adv, BAL_MASK, n_tasks=2),
                               0.5 * sum(ppo_clip_loss(log_probs[2 * k:2 * k + 2], old[2 * k:2 * k + 2],
                                                       adv[2 * k:2 * k + 2], BAL_MASK[2 * k:2 * k + 2]) for k in range(2)))


def test_balance_tasks_changes_training_and_defaults_off():

    assert ReinforceConfig().balance_tasks is False and PPOConfig().balance_tasks is False
    tasks = [CartPoleTask(), CartPoleTask(flip=True)]
    losses = {}
    for balance in (False, True):
        torch.manual_seed(0)
        config = ReinforceConfig(max_iters=2, target_return=None, balance_tasks=balance)
        losses[balance] = train_reinforce(StateSpaceModel(32, 4, 4, 64), tasks, config, seed=0).history["loss"]
    assert losses[False] != losses[True]


def test_a_time_budget_may_be_infinite_but_step_sizes_may_not():
    assert ReinforceConfig(max_seconds=float("inf")).max_seconds == float("inf")
    for bad in ({"lr": float("inf")}, {"max_seconds": float("nan")}, {"max_seconds": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReinforceConfig(**bad)


# -- the PPO loop's options for chapter 4 -------------------------------------------------------
def _small():
    torch.manual_seed(0)
    return StateSpaceModel(8, 4, 4, 16)


def _spy(monkeypatch, module, name):
    """Record every call of `module.name` (args, kwargs) while still running it."""
    calls, real = [], getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("balance", [False, True])
def test_ppo_balanced_loss_standardises_advantages_within_each_task(monkeypatch, balance):
    calls = _spy(monkeypatch, loops, "ppo_clip_loss")
    tasks = [CartPoleTask(), CartPoleTask(flip=True)]
    config = PPOConfig(max_iters=1, epochs=1, critic_steps=1, episodes_per_iter=8, episodes_per_task=4,
                       balance_tasks=balance, target_return=None)
    train_ppo(_small(), tasks, config, seed=0)
    (log_probs, old, advantages, mask, clip, n_tasks), _ = calls[0]
    assert n_tasks == (2 if balance else None)
    per_task = [(advantages[4 * k:4 * k + 4], mask[4 * k:4 * k + 4]) for k in range(2)]
    standardised = [abs(float(masked_mean(a, m))) < 1e-4 and abs(float(masked_mean(a ** 2, m)) - 1) < 1e-3
                    for a, m in per_task]
    assert all(standardised) == balance  # over the whole batch, each task's mean is not 0


def test_ppo_samples_tasks_by_world_half_and_half_seeded(monkeypatch):
    calls = _spy(monkeypatch, batches, "collect")
    tasks = list(get_family("flip+physics").train)
    config = PPOConfig(max_iters=3, epochs=1, critic_steps=1, episodes_per_iter=8, episodes_per_task=2,
                       task_sampling="by_world", target_return=None)
    result = train_ppo(_small(), tasks, config, seed=5)
    drawn = [(tuple(args[1]), args[2]) for args, _ in calls]
    assert [[t.flip for t in batch] for batch, _ in drawn] == [[False, False, True, True]] * 3
    assert all(per_task == 2 for _, per_task in drawn) and len({batch for batch, _ in drawn}) > 1
    assert {"normal_return", "flipped_return"} <= set(result.history)
    calls.clear()
    train_ppo(_small(), tasks, config, seed=5)
    assert [tuple(args[1]) for args, _ in calls] == [batch for batch, _ in drawn]  # same seed, same tasks
    in_order = PPOConfig(max_iters=1, episodes_per_iter=8, episodes_per_task=2, target_return=None)
    calls.clear()
    train_ppo(_small(), tasks, in_order, seed=5)
    assert list(calls[0][0][1]) == tasks[:4]
    with pytest.raises(ValueError, match="must be even"):
        PPOConfig(episodes_per_iter=6, episodes_per_task=2, task_sampling="by_world")
    with pytest.raises(ValueError, match="task_sampling"):
        PPOConfig(task_sampling="random")


@pytest.mark.parametrize("keep", ["best", "last"])
def test_ppo_selection_on_validation_keeps_the_best_scoring_weights(keep):
    scores, seen = iter([1.0, 5.0, 2.0, 3.0]), []

    def validate(policy):
        seen.append([p.detach().clone() for p in policy.parameters()])
        score = next(scores)
        return score, {"score": score}

    model = _small()
    config = PPOConfig(max_iters=4, epochs=1, critic_steps=1, validate_every=1, keep=keep, target_return=None)
    result = train_ppo(model, [CartPoleTask()], config, seed=0, validate=validate)
    assert result.validation["score"] == [1.0, 5.0, 2.0, 3.0] and result.validation["iteration"] == [0, 1, 2, 3]
    assert result.final_eval["iteration"] == 1 and result.final_eval["score"] == 5.0
    final = list(model.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(seen[1], seen[3]))  # training moved the weights
    expected = seen[1] if keep == "best" else [p.detach() for p in final]
    assert all(torch.equal(p.detach(), e) for p, e in zip(final, expected))
    assert not result.solved


def test_ppo_validation_target_stops_the_run_and_best_needs_a_callback():
    config = PPOConfig(max_iters=10, epochs=1, critic_steps=1, validate_every=2, target_return=4.0)
    scores = iter([1.0, 5.0, 9.0])
    result = train_ppo(_small(), [CartPoleTask()], config, seed=0, validate=lambda p: (next(scores), {}))
    assert result.solved and result.history["iteration"][-1] == 3 and result.validation["iteration"] == [1, 3]
    with pytest.raises(ValueError, match="keep='best'"):
        train_ppo(_small(), [CartPoleTask()], PPOConfig(max_iters=1, keep="best"), seed=0)
    with pytest.raises(ValueError, match="keep"):
        PPOConfig(keep="worst")

