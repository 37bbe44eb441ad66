"""The policy interface (chapter 2): every policy's stored log-probabilities equal its teacher-forced
ones, the RL^2 policy sees its previous action and reward, and the model's one functional path."""
import pytest
import torch
from torch.func import functional_call

from ssm_metarl import StateSpaceModel
from ssm_metarl.models.policy import (CallablePolicy, LinearPolicy, Policy, RL2Policy, SSMPolicy, TaskBatchedPolicy,
                               as_policy, policy_log_probs, previous)
from ssm_metarl.cartpole.rollout import collect
from ssm_metarl.cartpole.tasks import CartPoleTask

TASKS = [CartPoleTask(goal=0.5, max_steps=60), CartPoleTask(flip=True, goal=-0.5, max_steps=60)]


def _model(input_dim=4, seed=0):
    torch.manual_seed(seed)
    return StateSpaceModel(8, input_dim, 4, 16)


def _per_task(model, n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {k: v.detach() + 0.3 * torch.randn(n, *v.shape, generator=g) for k, v in model.named_parameters()}


def _policies():
    ssm, rl2 = _model(), _model(input_dim=7)
    fn = lambda x, h: functional_call(ssm, dict(ssm.named_parameters()), (x, h))  # noqa: E731
    return {
        "linear": LinearPolicy([0.0, 0.0, 1.0, 0.5], sharpness=3.0),
        "random": LinearPolicy(None),
        "model": ssm,  # a bare StateSpaceModel: as_policy wraps it
        "ssm": SSMPolicy(ssm),
        "task-batched": TaskBatchedPolicy(SSMPolicy(ssm), _per_task(ssm)),
        "rl2": RL2Policy(rl2),
        "rl2-task-batched": TaskBatchedPolicy(RL2Policy(rl2), _per_task(rl2)),
        "callable": CallablePolicy(fn, ssm.init_hidden),
    }


@pytest.mark.parametrize("name", list(_policies()))
def test_collect_log_probs_equal_teacher_forced_ones_for_every_policy(name):
    policy = _policies()[name]
    traj = collect(policy, TASKS, 3, seed=7)
    assert traj.num_steps > 20
    log_probs, entropy = policy_log_probs(policy, traj)
    torch.testing.assert_close(log_probs * traj.mask, traj.log_probs, atol=1e-5, rtol=0)
    assert torch.all(entropy[traj.mask] >= 0)
    assert isinstance(as_policy(policy), Policy)


def test_rl2_policy_sees_previous_action_and_reward():
    policy = RL2Policy(_model(input_dim=7))
    obs, state = torch.zeros(3, 4), policy.initial_state(3)
    x = policy.inputs(obs, torch.tensor([-1, 0, 1]), torch.tensor([0.0, 0.5, 1.0]))
    assert x.shape == (3, 7)
    torch.testing.assert_close(x[:, 4:], torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.5], [0.0, 1.0, 1.0]]))
    a, _ = policy.step(obs, torch.tensor([0, 0, 0]), torch.zeros(3), state)
    b, _ = policy.step(obs, torch.tensor([0, 0, 0]), torch.ones(3), state)
    assert not torch.allclose(a, b)  # the reward is an input
    # Teacher forcing shifts actions and rewards by one step, -1 and 0 first.
    prev_a, prev_r = previous(torch.tensor([[1, 0, 1]]), torch.tensor([[0.5, 0.25, 1.0]]))
    assert prev_a.tolist() == [[-1, 1, 0]] and prev_r.tolist() == [[0.0, 0.5, 0.25]]


def test_task_batched_policy_uses_each_tasks_weights():
    model = _model()
    params = _per_task(model)
    traj = collect(TaskBatchedPolicy(SSMPolicy(model), params), TASKS, 2, seed=3)
    for k in range(2):
        single = SSMPolicy(model, {name: v[k] for name, v in params.items()})
        part = traj.for_task(k)
        log_probs, _ = policy_log_probs(single, part)
        torch.testing.assert_close(log_probs * part.mask, part.log_probs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bounded", [True, False])
def test_model_outputs_equal_step_by_step_and_per_task_weights(bounded):
    torch.manual_seed(1)
    model = StateSpaceModel(32, 4, 4, 64, bounded=bounded)
    obs = torch.randn(3, 25, 4)
    hidden, steps = model.init_hidden(3), []
    for x in obs.unbind(1):
        y, hidden = model(x, hidden)
        steps.append(y)
    outputs, final = model.outputs(obs)
    torch.testing.assert_close(outputs, torch.stack(steps, 1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final, hidden, atol=1e-6, rtol=1e-5)
    shared = {k: v.expand(2, *v.shape) for k, v in model.named_parameters()}
    per_task, _ = model.outputs(obs.expand(2, *obs.shape), shared)
    torch.testing.assert_close(per_task, outputs.expand(2, *outputs.shape), atol=1e-6, rtol=1e-5)


def test_as_policy_explains_what_it_needs():
    with pytest.raises(ValueError, match="init_hidden"):
        as_policy(lambda x, h: (x, h))
    with pytest.raises(ValueError, match="split evenly"):
        collect(TaskBatchedPolicy(SSMPolicy(_model()), _per_task(_model(), n=3)), TASKS, 2)


def test_an_rl2_policy_trains_with_balanced_reinforce_and_meta_trains():
    from ssm_metarl.meta.evaluation import evaluate_adaptation
    from ssm_metarl.meta.maml_rl import MetaRLConfig
    from ssm_metarl.meta.training import meta_train
    from ssm_metarl.rl.loops import ReinforceConfig, train_reinforce

    policy = RL2Policy(_model(input_dim=7))
    before = [p.detach().clone() for p in policy.parameters()]
    result = train_reinforce(policy, TASKS, ReinforceConfig(max_iters=2, episodes_per_iter=4, target_return=None,
                                                            balance_tasks=True), seed=0)
    assert result.applied_updates == 2 and any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    config = MetaRLConfig(family="goal", epochs=1, tasks_per_epoch=2, episodes=2, eval_every=1, eval_episodes=2)
    run = meta_train(policy, config, progress=False)
    assert run.history["applied"] == [True]
    adapted = evaluate_adaptation(policy, TASKS, steps=(0, 1), episodes=2, eval_episodes=2, inner_lr=0.5)
    assert adapted.returns[1].shape == (2,)
