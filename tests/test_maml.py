"""MAML (chapter 3): meta-gradients against finite differences and a per-task reference,
batched vs looped agreement, the non-finite guard, sine regression helpers and MAML-RL."""
import math

import pytest
import torch
from torch import nn

from ssm_metarl import StateSpaceModel
from ssm_metarl.meta.maml import MetaMAML
from ssm_metarl.meta.per_task import unroll
from ssm_metarl.meta.sine import SineConfig, SineTasks, mse_loss, sine_errors, sine_model, train_sine




def _tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def _regression_data(n_tasks=3, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tasks, 2 * k, 1, generator=g, dtype=torch.float64)
    y = torch.sin(3 * x) + 0.1 * torch.randn(n_tasks, 2 * k, 1, generator=g, dtype=torch.float64)
    return (x[:, :k], y[:, :k]), (x[:, k:], y[:, k:])


def _flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _meta_loss_value(model, maml, loss_fn, support, query):
    """Meta-loss at the model's current weights, as a float (the inner step still needs autograd)."""
    return float(maml.meta_loss(loss_fn, support, query).detach())


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(steps):
    model = _tiny_mlp()
    loss_fn = mse_loss(model)
    support, query = _regression_data()
    maml = MetaMAML(model, inner_lr=0.1, inner_steps=steps)
    maml.meta_loss(loss_fn, support, query).backward()
    analytic = _flat_grad(model)

    numeric, eps = [], 1e-6
    with torch.no_grad():
        flat = torch.nn.utils.parameters_to_vector(model.parameters())
    for i in range(flat.numel()):
        values = []
        for sign in (1, -1):
            shifted = flat.clone()
            shifted[i] += sign * eps
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(shifted, model.parameters())
            values.append(_meta_loss_value(model, maml, loss_fn, support, query))
        numeric.append((values[0] - values[1]) / (2 * eps))
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, model.parameters())
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_first_order_gradient_is_query_gradient_at_adapted_weights():
    model = _tiny_mlp()
    loss_fn = mse_loss(model)
    support, query = _regression_data()
    maml = MetaMAML(model, inner_lr=0.1, inner_steps=2, first_order=True)
    maml.meta_loss(loss_fn, support, query).backward()
    fo = _flat_grad(model)

    # Reference: adapt each task by hand, take the query gradient at the adapted weights, average.
    reference = torch.zeros_like(fo)
    for i in range(support[0].shape[0]):
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        for _ in range(2):
            params = {k: v.requires_grad_() for k, v in params.items()}
            g = torch.autograd.grad(loss_fn(params, (support[0][i], support[1][i])), list(params.values()))
            params = {k: (v - 0.1 * gi).detach() for (k, v), gi in zip(params.items(), g)}
        params = {k: v.requires_grad_() for k, v in params.items()}
        g = torch.autograd.grad(loss_fn(params, (query[0][i], query[1][i])), list(params.values()))
        reference += torch.cat([gi.reshape(-1) for gi in g]) / support[0].shape[0]
    torch.testing.assert_close(fo, reference)

    # ... and it differs from the second-order gradient (the dropped term is not zero here).
    model.zero_grad()
    MetaMAML(model, inner_lr=0.1, inner_steps=2).meta_loss(loss_fn, support, query).backward()
    assert (fo - _flat_grad(model)).abs().max() > 1e-4


def _ssm_sequence_data(n_tasks=4, batch=3, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_tasks, 2, batch, steps, 2, generator=g, dtype=torch.float64)
    ys = torch.randn(n_tasks, 2, batch, steps, 2, generator=g, dtype=torch.float64)
    return (xs[:, 0], ys[:, 0]), (xs[:, 1], ys[:, 1])


def _ssm_loss(model):
    def loss_fn(params, batch):
        xs, ys = batch
        return ((unroll(model, params, xs) - ys) ** 2).mean()
    return loss_fn


@pytest.mark.parametrize("first_order", [False, True])
def test_batched_and_per_task_meta_gradients_agree_for_a_stateful_ssm(first_order):
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=3, input_dim=2, output_dim=2, hidden_dim=5).double()
    loss_fn = _ssm_loss(model)
    support, query = _ssm_sequence_data()
    grads = []
    for batched in (True, False):
        model.zero_grad()
        maml = MetaMAML(model, inner_lr=0.3, inner_steps=2, first_order=first_order, batched=batched)
        maml.meta_loss(loss_fn, support, query).backward()
        grads.append(_flat_grad(model))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)
    assert grads[0].abs().max() > 1e-3


def test_ssm_second_order_gradient_through_time_matches_finite_differences():
    torch.manual_seed(1)
    model = StateSpaceModel(state_dim=2, input_dim=2, output_dim=2, hidden_dim=3).double()
    loss_fn = _ssm_loss(model)
    support, query = _ssm_sequence_data(n_tasks=2, batch=2, steps=4)
    maml = MetaMAML(model, inner_lr=0.5)
    maml.meta_loss(loss_fn, support, query).backward()
    analytic = _flat_grad(model)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    numeric = []
    for i in range(flat.numel()):
        values = []
        for sign in (1, -1):
            shifted = flat.clone()
            shifted[i] += sign * 1e-6
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(shifted, model.parameters())
            values.append(_meta_loss_value(model, maml, loss_fn, support, query))
        numeric.append((values[0] - values[1]) / 2e-6)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, model.parameters())
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_unroll_matches_the_models_own_sequence_pass():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=4, input_dim=3, output_dim=2, hidden_dim=6)
    xs = torch.randn(5, 7, 3)
    expected, _ = model.forward_sequence(xs)
    torch.testing.assert_close(unroll(model, dict(model.named_parameters()), xs), expected)


def test_non_finite_meta_loss_is_skipped_and_counted():
    model = _tiny_mlp()
    maml = MetaMAML(model)
    before = [p.detach().clone() for p in model.parameters()]
    bad = sum(p.sum() for p in model.parameters()) * float("nan")
    result = maml.step(bad)
    assert not result.applied and maml.skipped_updates == 1 and maml.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    good = maml.step(sum((p ** 2).sum() for p in model.parameters()))
    assert good.applied and maml.updates == 1


def test_gradient_is_clipped_to_max_norm():
    model = _tiny_mlp()
    maml = MetaMAML(model, max_grad_norm=1e-3)
    step = maml.step(1e3 * sum((p ** 2).sum() for p in model.parameters()))
    norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    assert step.grad_norm > 1.0 and norm == pytest.approx(1e-3, rel=1e-4)


@pytest.mark.parametrize("kwargs", [{"inner_lr": 0}, {"outer_lr": -1}, {"inner_steps": -1}, {"max_grad_norm": float("nan")}])
def test_bad_hyperparameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        MetaMAML(_tiny_mlp(), **kwargs)


def test_sine_tasks_are_seeded_and_errors_follow_the_definition():
    a1, p1 = SineTasks(7).sample(4)
    a2, p2 = SineTasks(7).sample(4)
    assert torch.equal(a1, a2) and torch.equal(p1, p2)
    assert ((0.1 <= a1) & (a1 <= 5.0)).all() and ((0 <= p1) & (p1 <= math.pi)).all()
    model = sine_model(seed=0)
    errors, curves = sine_errors(model, a1, p1, steps=(0, 1))
    grid = torch.linspace(-5, 5, 100)
    with torch.no_grad():
        pred = model(grid[:, None])[:, 0]
    expected = ((pred[None] - a1[:, None] * torch.sin(grid[None] - p1[:, None])) ** 2).mean(1)
    torch.testing.assert_close(errors[0], expected)
    torch.testing.assert_close(curves[0], pred.expand(4, 100))
    assert not torch.equal(errors[1], errors[0])  # the step changed the fit


def test_sine_maml_improves_post_update_error_over_a_short_run():
    config = SineConfig(iterations=30, meta_batch=5)
    model, losses, _ = train_sine("maml", config, progress=False)
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    amplitude, phase = SineTasks(99).sample(20)
    trained, _ = sine_errors(model, amplitude, phase, steps=(1,))
    untrained, _ = sine_errors(sine_model(seed=0), amplitude, phase, steps=(1,))
    assert trained[1].mean() < untrained[1].mean()
    with pytest.raises(ValueError, match="valid choices"):
        train_sine("reptile", config)


# ---------------------------------------------------------------------------------------------
# The fast (batched-matmul) SSM path and MAML-RL
# ---------------------------------------------------------------------------------------------
from ssm_metarl.meta.evaluation import evaluate_adaptation
from ssm_metarl.meta.maml_rl import MetaRLConfig, policy_gradient_loss
from ssm_metarl.meta.training import meta_train
from ssm_metarl.models.policy import SSMPolicy, TaskBatchedPolicy
from ssm_metarl.cartpole.rollout import collect
from ssm_metarl.cartpole.tasks import CartPoleTask


def _per_task_params(model, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: v.detach() + 0.1 * torch.randn(n, *v.shape, generator=g, dtype=v.dtype)
            for k, v in model.named_parameters()}


def test_batched_matmul_ssm_equals_the_module_for_every_task():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=5, input_dim=4, output_dim=3, hidden_dim=7).double()
    params = _per_task_params(model, 3)
    obs = torch.randn(3, 2, 6, 4, dtype=torch.float64)
    out, _ = model.outputs(obs, params)
    y, h = model.step(obs[:, :, 0], torch.zeros(3, 2, 5, dtype=torch.float64), params)
    for i in range(3):
        ys = unroll(model, {k: v[i] for k, v in params.items()}, obs[i])
        torch.testing.assert_close(out[i], ys)
        torch.testing.assert_close(y[i], ys[:, 0])


def _rl_batch(model, n_tasks=3, episodes=2, steps=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = 0.5 * torch.randn(n_tasks, episodes, steps, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 2, (n_tasks, episodes, steps), generator=g)
    mask = torch.ones(n_tasks, episodes, steps, dtype=torch.bool)
    mask[:, 0, 5:] = False  # one shorter episode per task
    with torch.no_grad():
        out, _ = model.outputs(obs, {k: v.expand(n_tasks, *v.shape) for k, v in model.named_parameters()})
        old = torch.log_softmax(out[..., :2], -1).gather(-1, actions[..., None])[..., 0]
    return {"obs": obs, "actions": actions, "mask": mask, "old_log_probs": old,
            "advantages": torch.randn(n_tasks, episodes, steps, generator=g, dtype=torch.float64) * mask}


@pytest.mark.parametrize("first_order", [False, True])
def test_policy_gradient_meta_gradients_agree_batched_vmap_and_loop(first_order):
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=4, input_dim=4, output_dim=2, hidden_dim=6).double()
    support, query = _rl_batch(model, seed=1), _rl_batch(model, seed=2)
    grads = {}
    loss = policy_gradient_loss(model)
    for name, loss_fn, batched in (("matmul", loss, True), ("vmap", loss.one_task, True), ("loop", loss, False),
                                   ("vmap-loop", loss.one_task, False)):
        model.zero_grad()
        maml = MetaMAML(model, inner_lr=0.5, inner_steps=2, first_order=first_order, batched=batched)
        maml.meta_loss(loss_fn, support, query).backward()
        grads[name] = _flat_grad(model)
    for name, g in grads.items():
        torch.testing.assert_close(g, grads["matmul"], rtol=1e-9, atol=1e-11, msg=name)
    assert grads["matmul"].abs().max() > 1e-4


def test_policy_gradient_loss_at_the_collecting_weights_has_reinforce_gradient():
    from ssm_metarl.models.policy import policy_log_probs
    from ssm_metarl.rl import losses as rl

    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=4, input_dim=4, output_dim=2, hidden_dim=6).double()
    batch = _rl_batch(model, n_tasks=1)
    params = {k: v.expand(1, *v.shape) for k, v in model.named_parameters()}
    g_ppo = torch.autograd.grad(policy_gradient_loss(model)(params, batch).sum(), list(model.parameters()))
    traj = type("T", (), {"obs": batch["obs"][0], "actions": batch["actions"][0],
                          "rewards": torch.zeros_like(batch["advantages"][0])})
    log_probs, _ = policy_log_probs(model, traj)
    reinforce = rl.reinforce_loss(log_probs, batch["advantages"][0], batch["mask"][0])
    g_reinforce = torch.autograd.grad(reinforce, list(model.parameters()))
    for a, b in zip(g_ppo, g_reinforce):
        torch.testing.assert_close(a, b)


def test_task_policy_runs_each_tasks_weights_on_its_own_episodes():
    torch.manual_seed(0)
    model = StateSpaceModel()
    params = _per_task_params(model, 3)
    policy = TaskBatchedPolicy(SSMPolicy(model), params)
    obs, hidden = torch.randn(6, 4), torch.randn(6, 32).tanh()
    y, h = policy.step(obs, torch.zeros(6, dtype=torch.long), torch.zeros(6), hidden)
    for i in range(6):
        task_model = StateSpaceModel()
        task_model.load_state_dict({k: v[i // 2] for k, v in params.items()})
        y_ref, h_ref = task_model(obs[i:i + 1], hidden[i:i + 1])
        torch.testing.assert_close(y[i:i + 1], y_ref)
        torch.testing.assert_close(h[i:i + 1], h_ref)
    with pytest.raises(ValueError, match="split evenly"):
        policy.step(torch.randn(5, 4), torch.zeros(5, dtype=torch.long), torch.zeros(5), torch.zeros(5, 32))


def test_evaluate_adaptation_zero_steps_is_plain_evaluation_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = StateSpaceModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tasks = [CartPoleTask(goal=0.5, max_steps=50), CartPoleTask(goal=-0.5, max_steps=50)]
    result = evaluate_adaptation(model, tasks, steps=(0, 1), episodes=3, eval_episodes=4, inner_lr=0.5, seed=3)
    plain = collect(model, tasks, 4, seed=4).returns.reshape(2, 4).mean(1).double().numpy()
    assert result.returns[0] == pytest.approx(plain)
    assert not (result.returns[1] == pytest.approx(plain))  # a step of 0.5 changes the policy
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.estimate(1).n == 2


def _tiny_config(**kw):
    return MetaRLConfig(**{"family": "goal", "epochs": 4, "tasks_per_epoch": 2, "episodes": 2, "eval_every": 2,
                           "eval_episodes": 2, "inner_lr": 0.1, **kw})


def test_meta_train_resumes_after_an_interruption_with_identical_results(tmp_path, monkeypatch):
    import ssm_metarl.cartpole.rollout as rollout

    def fresh():
        torch.manual_seed(0)
        return StateSpaceModel(state_dim=4, hidden_dim=8)

    reference = fresh()
    full = meta_train(reference, _tiny_config(), progress=False)

    # Interrupt the second run in epoch 3 (after the checkpoint written at epoch 2).
    real_collect, calls = rollout.collect, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_collect(*args, **kwargs)

    path = tmp_path / "run.resume.pth"
    monkeypatch.setattr(rollout, "collect", flaky)
    with pytest.raises(KeyboardInterrupt):
        meta_train(fresh(), _tiny_config(), checkpoint=str(path), progress=False)
    monkeypatch.setattr(rollout, "collect", real_collect)
    assert path.exists()

    resumed_model = fresh()
    resumed = meta_train(resumed_model, _tiny_config(), checkpoint=str(path), progress=False)
    assert resumed.resumed_from == 2
    assert resumed.history["post_return"] == full.history["post_return"]
    assert resumed.validation == full.validation and resumed.best_epoch == full.best_epoch
    for a, b in zip(resumed_model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different config"):
        meta_train(fresh(), _tiny_config(inner_lr=0.2), checkpoint=str(path), progress=False)


@pytest.mark.parametrize("bad", [{"mode": "hybrid"}, {"epochs": 0}, {"inner_lr": -0.1}, {"gamma": 1.5}])
def test_meta_rl_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        MetaRLConfig(**bad)
