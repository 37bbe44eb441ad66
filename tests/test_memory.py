"""Chapter 7's memory policies: every core acts step by step exactly as it trains over whole sequences
(with and without episode boundaries inside a row), they have the same size, they are seeded, every
weight learns, and they plug into chapter 2's rollout and losses."""

import pytest
import torch

from ssm_metarl.cartpole.rollout import collect
from ssm_metarl.cartpole.tasks import CartPoleTask
from ssm_metarl.models.diagonal_stack import DiagonalSSMStack
from ssm_metarl.models.memory import (MEMORY_CORES, MemoryPolicy, memory_parameter_count,
                                      memory_width)
from ssm_metarl.models.memory_cores import memory_core
from ssm_metarl.models.policy import Policy, RL2Policy, as_policy, policy_log_probs, previous, select_actions

CASES = [(core, inputs) for core in MEMORY_CORES for inputs in ("obs", "rl2")]
# the widths and sizes the module docstring documents: {input_dim: {core: (width, parameters)}}
DOCUMENTED = {
    7: {"card_ssm": (25, 6728), "diag_ssm": (28, 6919), "gru": (32, 6691), "lstm": (28, 6807)},
    6: {"card_ssm": (25, 6703), "diag_ssm": (28, 6891), "gru": (32, 6659), "lstm": (28, 6779)},
}


def _policy(core, inputs="obs", input_dim=7, seed=0, width=12):
    """A small policy whose actor is scaled up: the real init's logits are ~0.01, so that an
    error of 1e-5 in them would hide a wrong memory."""
    policy = MemoryPolicy(core, input_dim, width=width, inputs=inputs, seed=seed)
    with torch.no_grad():
        policy.actor.weight.mul_(100.0)
    return policy


def _data(policy, batch=3, steps=48, reset_rate=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, steps, policy.obs_dim, generator=g)
    actions = torch.randint(0, 2, (batch, steps), generator=g)
    rewards = torch.rand(batch, steps, generator=g)
    resets = torch.rand(batch, steps, generator=g) < reset_rate
    return obs, actions, rewards, resets


def _step_through(policy, obs, actions, rewards, resets=None, state=None):
    """The acting path: one `step_with_value` per time step, fed as `collect` feeds a policy."""
    prev_action, prev_reward = previous(actions, rewards)
    state = policy.initial_state(obs.shape[0]) if state is None else state
    logits, values = [], []
    for t in range(obs.shape[1]):
        lg, v, state = policy.step_with_value(
            obs[:, t], prev_action[:, t], prev_reward[:, t], state, None if resets is None else resets[:, t]
        )
        logits.append(lg)
        values.append(v)
    return torch.stack(logits, 1), torch.stack(values, 1), state


@pytest.mark.parametrize("core,inputs", CASES)
@pytest.mark.parametrize("reset_rate", [0.0, 0.1])
def test_acting_step_by_step_equals_the_sequence_path(core, inputs, reset_rate):
    policy = _policy(core, inputs)
    obs, actions, rewards, resets = _data(policy, reset_rate=reset_rate, seed=len(core))
    if reset_rate:
        assert resets[:, 1:].any()  # boundaries inside the rows, not only at the start
    with torch.no_grad():
        want_logits, want_values, _ = _step_through(policy, obs, actions, rewards, resets)
        logits, values = policy.sequence(obs, actions, rewards, resets if reset_rate else None)
    assert logits.shape == (3, 48, 2) and values.shape == (3, 48)
    assert want_logits.abs().max() > 0.1 and want_values.abs().max() > 0.1  # not trivially small
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, want_values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(policy.logits(obs, actions, rewards),
                               policy.sequence(obs, actions, rewards)[0])
    if reset_rate:  # the resets matter: ignoring them gives other outputs
        assert not torch.allclose(policy.sequence(obs, actions, rewards)[0], logits, atol=1e-3)


@pytest.mark.parametrize("core,inputs", CASES)
def test_a_sequence_with_resets_equals_its_episodes_run_separately(core, inputs):
    policy = _policy(core, inputs)
    lengths = [11, 17, 1, 9]
    obs, actions, rewards, _ = _data(policy, batch=2, steps=sum(lengths), seed=5)
    resets = torch.zeros(2, sum(lengths), dtype=torch.bool)
    starts = torch.tensor([0, 11, 28, 29])
    resets[:, starts] = True
    with torch.no_grad():
        logits, values = policy.sequence(obs, actions, rewards, resets)
        pieces = [policy.sequence(o, a, r) for o, a, r in zip(obs.split(lengths, 1), actions.split(lengths, 1),
                                                             rewards.split(lengths, 1))]
    torch.testing.assert_close(logits, torch.cat([p[0] for p in pieces], 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, torch.cat([p[1] for p in pieces], 1), atol=1e-5, rtol=1e-5)


def test_the_diagonal_stacks_scan_agrees_with_its_recurrence_over_a_long_meta_episode():
    policy = _policy("diag_ssm", width=16)
    obs, actions, rewards, resets = _data(policy, batch=2, steps=1000, reset_rate=0.004, seed=3)
    with torch.no_grad():
        want_logits, want_values, _ = _step_through(policy, obs, actions, rewards, resets)
        logits, values = policy.sequence(obs, actions, rewards, resets)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, want_values, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("core,inputs", CASES)
def test_a_row_cut_in_two_continues_from_the_state_acting_reached(core, inputs):
    policy = _policy(core, inputs)
    obs, actions, rewards, resets = _data(policy, steps=30, reset_rate=0.1, seed=9)
    cut = 12
    with torch.no_grad():
        logits, values = policy.sequence(obs, actions, rewards, resets)
        _, _, mid = _step_through(policy, obs[:, :cut], actions[:, :cut], rewards[:, :cut], resets[:, :cut])
        tail = lambda **kw: policy.sequence(obs[:, cut:], actions[:, cut:], rewards[:, cut:], resets[:, cut:], **kw)
        tail_logits, tail_values = tail(state=mid, prev_action=actions[:, cut - 1], prev_reward=rewards[:, cut - 1])
        fresh_logits, _ = tail()
    torch.testing.assert_close(tail_logits, logits[:, cut:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tail_values, values[:, cut:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fresh_logits, logits[:, cut:], atol=1e-3)  # the carried state matters


@pytest.mark.parametrize("input_dim", [7, 6])
@pytest.mark.parametrize("core", MEMORY_CORES)
def test_every_core_has_the_cards_size(core, input_dim):
    width = memory_width(core, input_dim)
    count = memory_parameter_count(core, input_dim, width)
    assert abs(count - 6744) <= 0.05 * 6744
    assert (width, count) == DOCUMENTED[input_dim][core]  # the module docstring's table is current
    policy = MemoryPolicy(core, input_dim)
    assert policy.width == width and sum(p.numel() for p in policy.parameters()) == count
    # the nearest: one unit wider or narrower is farther from the budget
    for other in (width - 1, width + 1):
        assert abs(memory_parameter_count(core, input_dim, other) - 6744) >= abs(count - 6744)


def test_a_budget_no_width_can_meet_is_refused():
    with pytest.raises(ValueError, match="within 5% of target_params=10"):
        memory_width("gru", 7, target_params=10)
    assert memory_width("diag_ssm", 7, layers=1) != memory_width("diag_ssm", 7)


@pytest.mark.parametrize("core", MEMORY_CORES)
def test_the_same_seed_gives_the_same_weights(core):
    a, b, c = (MemoryPolicy(core, 7, seed=s).state_dict() for s in (3, 3, 4))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    torch.manual_seed(0)
    d = MemoryPolicy(core, 7, seed=3).state_dict()
    torch.manual_seed(1)
    assert all(torch.equal(d[k], a[k]) for k in a)  # the global generator plays no part
    state = torch.get_rng_state()
    MemoryPolicy(core, 7, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # ... and is left untouched


@pytest.mark.parametrize("core,inputs", CASES)
def test_gradients_reach_every_parameter_through_the_sequence_path(core, inputs):
    policy = MemoryPolicy(core, 7, inputs=inputs)
    obs, actions, rewards, resets = _data(policy, steps=40, reset_rate=0.1, seed=2)
    logits, values = policy.sequence(obs, actions, rewards, resets)
    (logits.square().sum() + values.square().sum()).backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize("core", MEMORY_CORES)
def test_rl2_inputs_are_built_as_rl2policy_builds_them(core):
    policy = _policy(core, "rl2")
    obs = torch.randn(3, 4)
    prev_action, prev_reward = torch.tensor([-1, 0, 1]), torch.tensor([0.0, 0.5, 1.0])
    reference = RL2Policy.inputs(None, obs, prev_action, prev_reward)
    torch.testing.assert_close(policy._features(obs, prev_action, prev_reward), reference)
    state = policy.initial_state(3)
    a = policy.step(obs, torch.zeros(3, dtype=torch.long), torch.zeros(3), state)[0]
    b = policy.step(obs, torch.zeros(3, dtype=torch.long), torch.ones(3), state)[0]
    assert not torch.allclose(a, b)  # the reward is an input
    c = _policy(core, "obs", input_dim=4)
    assert torch.equal(c.step(obs, prev_action, torch.ones(3), c.initial_state(3))[0],
                       c.step(obs, prev_action, torch.zeros(3), c.initial_state(3))[0])


@pytest.mark.parametrize("core,inputs", CASES)
def test_it_runs_in_chapter_2s_rollout_and_losses(core, inputs):
    policy = _policy(core, inputs, input_dim=7 if inputs == "rl2" else 4)
    assert isinstance(policy, Policy) and as_policy(policy) is policy
    tasks = [CartPoleTask(goal=0.5, max_steps=40), CartPoleTask(flip=True, max_steps=40)]
    traj = collect(policy, tasks, 2, seed=7)
    assert traj.num_steps > 20
    log_probs, entropy = policy_log_probs(policy, traj)
    torch.testing.assert_close(log_probs * traj.mask, traj.log_probs, atol=1e-5, rtol=0)
    assert traj.log_probs[traj.mask].std() > 0.01  # a policy that is not uniform
    log_probs.sum().backward()
    assert policy.project.weight.grad.abs().sum() > 0
    logits, _ = policy.step(traj.obs[:, 0], traj.actions[:, 0], traj.rewards[:, 0], policy.initial_state(4))
    assert select_actions(logits, greedy=True).shape == (4,)


def test_cores_keep_the_width_and_carry_flat_float32_states():
    for core, size in (("card_ssm", 10), ("diag_ssm", 40), ("gru", 10), ("lstm", 20)):
        module = memory_core(core, 10)
        assert module.state_size == size
        y, state = module.run(torch.randn(2, 5, 10))
        assert y.shape == (2, 5, 10) and state.shape == (2, size) and state.dtype == torch.float32
        y, state = module.step(torch.randn(2, 10), state)
        assert y.shape == (2, 10) and state.shape == (2, size)
    for core in MEMORY_CORES:  # seeded, and the global generator untouched
        state = torch.get_rng_state()
        a, b, c = (memory_core(core, 6, seed=s).state_dict() for s in (1, 1, 2))
        assert torch.equal(torch.get_rng_state(), state)
        assert all(torch.equal(a[k], b[k]) for k in a) and any(not torch.equal(a[k], c[k]) for k in a)
    stack = DiagonalSSMStack(8, state_dim=3, layers=1)
    assert stack.initial_state(2).shape == (2, 6)
    # a stable recurrence: every discrete eigenvalue inside the unit circle
    assert (stack.layers[0].discrete()[0].abs() < 1).all()


def test_bad_arguments_and_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown core 'mamba'.*'card_ssm', 'diag_ssm', 'gru', 'lstm'"):
        MemoryPolicy("mamba", 7)
    with pytest.raises(ValueError, match=r"unknown inputs 'obs\+'.*'obs', 'rl2'"):
        MemoryPolicy("gru", 7, inputs="obs+")
    with pytest.raises(ValueError, match="input_dim = obs_dim \\+ 3"):
        MemoryPolicy("gru", 3, inputs="rl2")
    with pytest.raises(ValueError, match="layers applies to core='diag_ssm' only"):
        MemoryPolicy("gru", 7, layers=1)
    with pytest.raises(ValueError, match="width must be a positive int"):
        MemoryPolicy("lstm", 7, width=0)
    policy = MemoryPolicy("gru", 7, inputs="rl2")
    state = policy.initial_state(2)
    a, r = torch.zeros(2, dtype=torch.long), torch.zeros(2)
    with pytest.raises(ValueError, match=r"obs must have shape \(B, 4\), got \(2, 7\)"):
        policy.step(torch.zeros(2, 7), a, r, state)
    with pytest.raises(ValueError, match=r"state must have shape \(B, state_size\) = \(2, 32\), got \(2, 31\)"):
        policy.step(torch.zeros(2, 4), a, r, state[:, 1:])
    with pytest.raises(ValueError, match=r"prev_reward must have shape \(B,\) = \(2,\), got \(2, 1\)"):
        policy.step(torch.zeros(2, 4), a, r[:, None], state)
    with pytest.raises(ValueError, match="resets must have dtype torch.bool"):
        policy.step_with_value(torch.zeros(2, 4), a, r, state, resets=torch.zeros(2))
    with pytest.raises(TypeError, match="obs has dtype torch.float64"):
        policy.step(torch.zeros(2, 4, dtype=torch.float64), a, r, state)
    obs, actions, rewards = torch.zeros(2, 5, 4), torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"obs must have shape \(\.\.\., T, 4\), got \(2, 4\)"):
        policy.sequence(obs[:, 0], actions, rewards)
    with pytest.raises(ValueError, match=r"actions must have shape obs.shape\[:-1\] = \(2, 5\), got NoneType"):
        policy.sequence(obs)
    with pytest.raises(ValueError, match=r"rewards must have shape obs.shape\[:-1\] = \(2, 5\), got \(2, 4\)"):
        policy.sequence(obs, actions, rewards[:, 1:])
    with pytest.raises(ValueError, match=r"resets must have shape obs.shape\[:-1\] = \(2, 5\), got \(5,\)"):
        policy.sequence(obs, actions, rewards, resets=torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"state must have shape \(N, size\) = \(2, 32\)"):
        policy.sequence(obs, actions, rewards, state=torch.zeros(3, 32))
