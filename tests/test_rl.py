"""Policy-gradient building blocks of chapter 2: returns, GAE, losses, the update guard, training."""
import math

import pytest
import torch

from ssm_metarl import StateSpaceModel
from ssm_metarl.rl import (PPOConfig, ReinforceConfig, UpdateGuard, _ssm_outputs, action_log_probs,
                           batch_baseline, discounted_returns, gae, masked_mean, normalize_advantages,
                           policy_outputs, ppo_clip_loss, reinforce_loss, train_ppo, train_reinforce)
from ssm_metarl.tasks import CartPoleTask




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


@pytest.mark.parametrize("bounded", [True, False])
def test_fast_ssm_sequence_equals_step_by_step(bounded):
    torch.manual_seed(1)
    model = StateSpaceModel(32, 4, 4, 64, bounded=bounded)
    obs = torch.randn(3, 25, 4)
    step_by_step = policy_outputs(lambda x, h: model(x, h), obs, init_hidden=model.init_hidden)
    torch.testing.assert_close(_ssm_outputs(model, obs, model.init_hidden(3)), step_by_step, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(policy_outputs(model, obs), step_by_step, atol=1e-6, rtol=1e-5)


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
        assert set(result.to_dict()) >= {"history", "skipped_updates", "solved"}


def test_training_is_reproducible_and_validates_config():
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = StateSpaceModel(32, 4, 4, 64)
        runs.append(train_reinforce(model, [CartPoleTask()], ReinforceConfig(max_iters=3, target_return=None,
                                                                              baseline="learned"), seed=3))
    assert runs[0].history["mean_return"] == runs[1].history["mean_return"]
    with pytest.raises(ValueError, match="valid choices"):
        train_reinforce(StateSpaceModel(32, 4, 4, 64), [CartPoleTask()], ReinforceConfig(baseline="mean"))
    for bad in ({"lr": 0.0}, {"gamma": 1.5}, {"episodes_per_iter": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReinforceConfig(**bad)
    with pytest.raises(ValueError, match="clip"):
        PPOConfig(clip=-0.1)
