"""Batched rollouts of chapter 2: the simulator equals Gymnasium's CartPole, collect() and evaluate()."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

from ssm_metarl import StateSpaceModel
from ssm_metarl.models.policy import policy_log_probs
from ssm_metarl.cartpole.rollout import collect, evaluate
from ssm_metarl.models.policy import LinearPolicy
from ssm_metarl.cartpole.envs import compare_with_gymnasium
from ssm_metarl.cartpole.tasks import CartPoleTask, get_family

RULE = LinearPolicy([0.0, 0.0, 1.0, 0.5])  # a = [theta + 0.5 theta_dot > 0]
EQUIVALENCE_TASKS = [CartPoleTask(), CartPoleTask(flip=True), get_family("physics").test[0],
                     get_family("flip+goal+physics").train[1]]




@pytest.mark.parametrize("task", EQUIVALENCE_TASKS, ids=["normal", "flipped", "physics", "flip+goal+physics"])
def test_vector_simulator_matches_gymnasium_step_for_step(task):
    result = compare_with_gymnasium(task, n=6, seed=11)
    assert result.max_diff <= 1e-6 and result.same_end
    assert result.steps > 6 * 30, "episodes should be long enough to test many steps"


def test_collect_shapes_order_and_padding():
    model = StateSpaceModel(32, 4, 4, 64)
    tasks = [CartPoleTask(), CartPoleTask(flip=True), CartPoleTask(goal=0.5, max_steps=200)]
    traj = collect(model, tasks, episodes_per_task=4, seed=3)
    n, t = traj.obs.shape[:2]
    assert traj.obs.shape == (12, t, 4) and traj.obs.dtype == torch.float32
    assert traj.actions.shape == (12, t) and traj.actions.dtype == torch.int64
    assert traj.rewards.dtype == torch.float32 and traj.mask.dtype == torch.bool
    assert traj.task_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # task-major
    lengths = traj.lengths
    assert int(lengths.max()) == t
    # The mask is a prefix: played steps first, then padding with zeros.
    assert torch.equal(traj.mask, torch.arange(t)[None, :] < lengths[:, None])
    assert not traj.rewards[~traj.mask].any() and not traj.obs[~traj.mask].any()
    assert torch.equal(traj.returns[:8], lengths[:8].float())  # no goal: 1 per step
    assert traj.num_steps == int(lengths.sum())
    assert traj.for_task(1).tasks == (tasks[1],) and torch.equal(traj.for_task(1).obs, traj.obs[4:8])


def test_collect_goal_rewards_follow_the_cart():
    task = CartPoleTask(goal=-1.0, max_steps=200)
    traj = collect(RULE, [task], episodes_per_task=3, seed=0)
    # reward_t is computed at the position after step t, i.e. the next stored observation
    x_next, played = traj.obs[:, 1:, 0], traj.mask[:, 1:]
    expected = 1.0 - (x_next + 1.0).abs() / 2.4
    torch.testing.assert_close(traj.rewards[:, :-1][played], expected[played], atol=1e-6, rtol=0)


def test_collect_is_seeded_and_greedy_is_deterministic():
    model = StateSpaceModel(32, 4, 4, 64)
    a = collect(model, [CartPoleTask()], 8, seed=1)
    b = collect(model, [CartPoleTask()], 8, seed=1)
    c = collect(model, [CartPoleTask()], 8, seed=2)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.obs[:, 0], c.obs[:, 0])
    g = collect(model, [CartPoleTask()], 8, seed=1, greedy=True)
    out, _ = model(g.obs[:, 0], model.init_hidden(8))
    assert torch.equal(g.actions[:, 0], out[:, :2].argmax(1))


def test_stored_log_probs_equal_teacher_forced_ones_and_functional_weights():
    torch.manual_seed(0)
    model = StateSpaceModel(32, 4, 4, 64)
    traj = collect(model, [CartPoleTask(), CartPoleTask(flip=True)], 5, seed=4)
    log_probs, _ = policy_log_probs(model, traj)
    torch.testing.assert_close(log_probs * traj.mask, traj.log_probs, atol=1e-5, rtol=0)
    # MAML passes weights functionally: the same numbers, and gradients reach the weights dict.
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    fn = lambda x, h: functional_call(model, params, (x, h))  # noqa: E731
    traj_fn = collect(fn, [CartPoleTask(), CartPoleTask(flip=True)], 5, seed=4, init_hidden=model.init_hidden)
    assert torch.equal(traj_fn.actions, traj.actions)
    log_probs_fn, _ = policy_log_probs(fn, traj_fn, init_hidden=model.init_hidden)
    torch.testing.assert_close(log_probs_fn, log_probs, atol=1e-6, rtol=0)
    (log_probs_fn * traj.mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


def test_fixed_rule_balances_normal_but_not_flipped_tasks():
    normal = collect(RULE, [CartPoleTask()], 10, seed=0, greedy=True)
    flipped = collect(RULE, [CartPoleTask(flip=True)], 10, seed=0, greedy=True)
    assert torch.all(normal.returns == 500)
    assert flipped.returns.mean() < 20


def test_evaluate_ci_and_backends():
    random_policy = LinearPolicy(None)
    result = evaluate(random_policy, [CartPoleTask()], episodes=60, seed=5, greedy=False)
    normal = 1.96 * result.returns.std(ddof=1) / np.sqrt(result.returns.size)  # the CLT's interval, independently
    assert result.mean == pytest.approx(result.returns.mean())
    assert result.ci.high - result.ci.low == pytest.approx(2 * normal, rel=0.25)
    assert result.ci.low < result.mean < result.ci.high and result.returns.shape == (60,)
    assert 10 < result.mean < 40
    more = evaluate(random_policy, [CartPoleTask()], episodes=600, seed=5, greedy=False)
    assert more.ci.high - more.ci.low < result.ci.high - result.ci.low
    real = evaluate(RULE, [CartPoleTask(), CartPoleTask(flip=True)], episodes=5, seed=0, backend="gymnasium")
    assert real.per_task[0] == 500 and real.per_task[1] < 20
    assert set(real.to_dict()) >= {"mean", "ci", "returns", "backend"}
    with pytest.raises(ValueError, match="valid choices"):
        evaluate(RULE, [CartPoleTask()], backend="jax")
    with pytest.raises(ValueError, match="episodes_per_task"):
        collect(RULE, [CartPoleTask()], episodes_per_task=0)


def test_balancing_ssm_balances_and_rollout_rates_count_played_steps():
    from ssm_metarl import balancing_ssm
    from ssm_metarl.cartpole.rollout_speed import naive_rollout, rollout_rates

    model = balancing_ssm()
    assert torch.all(collect(model, [CartPoleTask()], 4, seed=0, greedy=True).returns == 500)
    assert naive_rollout(model, steps=30, seed=0) == 30
    rates = rollout_rates(model, sizes=(1, 4), naive_steps=30, rounds=2, max_steps=50)
    assert rates.played == {1: 50, 4: 200}  # every episode balances to the cap
    assert set(rates.seconds) == {"naive", 1, 4} and all(len(t) == 2 for t in rates.seconds.values())
    assert rates.rate(4) == pytest.approx(200 / min(rates.seconds[4]))
    ratio = rates.speedup(4)
    assert ratio.n == 2 and ratio.low <= ratio.mean <= ratio.high
