"""Chapter 4's adapters, replay buffer, in-context recipe and shipped in-context model."""
import json
import warnings

import numpy as np
import pytest
import torch

from ssm_metarl import StateSpaceModel, artifact_path, collect
from ssm_metarl.adapt.adapters import (HybridAdaptationConfig, HybridAdapter, StandardAdaptationConfig,
                                       StandardAdapter, replay_kl)
from ssm_metarl.adapt.buffer import ExperienceBuffer
from ssm_metarl.adapt.in_context import InContextConfig, evaluate_in_context, hidden_states, train_in_context
from ssm_metarl.rl.batches import stratified_tasks
from ssm_metarl.models.policy import RL2Policy, SSMPolicy
from ssm_metarl.rl.losses import masked_mean, normalize_advantages, ppo_clip_loss
from ssm_metarl.cartpole.tasks import CartPoleTask, get_family


def _model(seed=0, input_dim=4):
    torch.manual_seed(seed)
    return StateSpaceModel(8, input_dim, 4, 16)


def _support(model, n_tasks=2, episodes=3, seed=0):
    tasks = list(get_family("goal_sharp").validation)[:n_tasks]
    return collect(model, tasks, episodes, seed=seed, max_steps=30)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("adapter_kind", ["standard", "hybrid"])
def test_adapters_never_mutate_their_input_and_change_the_copy(adapter_kind):
    model = _model()
    before = _weights(model)
    support = _support(model)
    if adapter_kind == "standard":
        adapter = StandardAdapter(model, StandardAdaptationConfig(lr=0.1, steps=2))
    else:
        buffer = ExperienceBuffer(32, seed=0)
        buffer.add(collect(model, list(get_family("goal_sharp").train)[:4], 2, seed=1, max_steps=30))
        adapter = HybridAdapter(model, HybridAdaptationConfig(lr=0.01, steps=2, replay_episodes=4), buffer)
    adapted = adapter.adapt(support.for_task(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the input model changed"
    assert adapted is not model and isinstance(adapted, StateSpaceModel)
    assert any(not torch.equal(before[k], v) for k, v in adapted.state_dict().items()), "the copy did not adapt"
    per_task = adapter.adapt_params(support)
    assert all(v.shape[0] == 2 for v in per_task.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_adapting_a_policy_returns_a_policy_of_the_same_class():
    model = _model(input_dim=7)
    policy = RL2Policy(model)
    support = collect(policy, [CartPoleTask(max_steps=20)], 2, seed=0)
    adapted = StandardAdapter(policy, StandardAdaptationConfig(lr=0.1)).adapt(support)
    assert type(adapted) is RL2Policy and adapted.model is not model


def test_same_seed_same_adapted_weights():
    def run():
        model = _model(3)
        buffer = ExperienceBuffer(32, seed=7)
        buffer.add(collect(model, list(get_family("goal_sharp").train)[:4], 2, seed=1, max_steps=30))
        adapter = HybridAdapter(model, HybridAdaptationConfig(lr=0.01, steps=3, optimizer="adam", replay_episodes=4),
                                buffer)
        return adapter.adapt_params(_support(model, seed=5))
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_buffer_is_bounded_first_in_first_out_and_seeded():
    model = _model()
    buffer = ExperienceBuffer(capacity=5, seed=0)
    traj = collect(model, [CartPoleTask(max_steps=15)], 4, seed=0)
    buffer.add(traj)
    buffer.add(traj)
    assert len(buffer) == 5 and buffer.added == 8
    assert torch.equal(buffer.episodes[-1][0], traj.obs[3, :int(traj.lengths[3])])  # newest kept, oldest dropped
    one, two = buffer.sample(3, seed=4), buffer.sample(3, seed=4)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert one["obs"].shape[:2] == one["mask"].shape and one["mask"].any(dim=1).all()


def test_buffer_errors_name_the_problem():
    buffer = ExperienceBuffer(capacity=4)
    with pytest.raises(ValueError, match="cannot sample 1 episodes from a buffer holding 0"):
        buffer.sample(1)
    buffer.add(collect(_model(), [CartPoleTask(max_steps=10)], 2, seed=0))
    rl2 = RL2Policy(_model(input_dim=7))
    traj = collect(rl2, [CartPoleTask(max_steps=10)], 1, seed=0)
    traj.obs = torch.cat([traj.obs, traj.obs[..., :3]], dim=-1)  # 7 numbers per observation
    with pytest.raises(ValueError, match="holds observations of size 4, got 7"):
        buffer.add(traj)
    with pytest.raises(TypeError, match="takes a Trajectories batch"):
        buffer.add({"obs": torch.zeros(1, 2, 4)})
    with pytest.raises(ValueError, match="capacity must be"):
        ExperienceBuffer(capacity=0)
    with pytest.raises(ValueError, match="HybridAdapter needs an ExperienceBuffer"):
        HybridAdapter(_model(), HybridAdaptationConfig(), None)


def test_nan_guard_refuses_a_huge_step_with_a_warning_and_keeps_the_original():
    model = _model()
    before = _weights(model)
    support = _support(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapted = StandardAdapter(model, StandardAdaptationConfig(lr=1e6, steps=3)).adapt(support.for_task(0))
    assert any("adaptation refused" in str(w.message) and "lr=1000000.0" in str(w.message) for w in caught)
    assert all(torch.isfinite(v).all() for v in adapted.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in adapted.state_dict().items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sane step size warns about nothing
        StandardAdapter(model, StandardAdaptationConfig(lr=0.01)).adapt(support.for_task(0))


def test_replay_kl_is_zero_with_zero_gradient_at_the_behaviour_policy():
    model = _model()
    buffer = ExperienceBuffer(16)
    buffer.add(collect(model, [CartPoleTask(max_steps=20)], 4, seed=0))
    replay = buffer.sample(4, seed=0)
    params = {k: v.detach().unsqueeze(0).clone().requires_grad_() for k, v in model.named_parameters()}
    kl = replay_kl(SSMPolicy(model), params, replay)
    grads = torch.autograd.grad(kl.sum(), list(params.values()))
    assert abs(float(kl.detach())) < 1e-6 and max(float(g.abs().max()) for g in grads) < 1e-5
    moved = {k: v.detach() + 0.05 * torch.randn_like(v) for k, v in params.items()}
    assert float(replay_kl(SSMPolicy(model), moved, replay)) > 1e-4


def test_balanced_and_unbalanced_losses_differ_exactly_as_documented():
    # Task 0 played one 10-step episode, task 1 one 2-step episode (padded to 10).
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0], mask[1, :2] = True, True
    values = torch.zeros(2, 10)
    values[0], values[1, :2] = 1.0, 4.0
    assert float(masked_mean(values, mask)) == pytest.approx((10 * 1.0 + 2 * 4.0) / 12)  # every step weighs the same
    assert float(masked_mean(values, mask, n_tasks=2)) == pytest.approx((1.0 + 4.0) / 2)  # every task weighs the same
    # Advantages: standardised over the whole batch, or within each task.
    adv = torch.randn(2, 10) * mask
    per_task = normalize_advantages(adv, mask, n_tasks=2)
    for k in range(2):
        played = per_task[k][mask[k]]
        assert float(played.mean()) == pytest.approx(0.0, abs=1e-5)
    # The PPO loss at the acting policy (ratio 1) is minus the (balanced) mean advantage.
    log_probs = torch.zeros(2, 10)
    assert float(ppo_clip_loss(log_probs, log_probs, values, mask)) == pytest.approx(-(18.0 / 12))
    assert float(ppo_clip_loss(log_probs, log_probs, values, mask, n_tasks=2)) == pytest.approx(-2.5)


def test_in_context_batches_hold_both_worlds_and_the_loss_is_balanced_unless_asked():
    tasks = list(get_family("flip+physics").train)
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = stratified_tasks(tasks, 4, rng)
        assert [t.flip for t in batch] == [False, False, True, True]
    with pytest.raises(ValueError, match="both flip worlds"):
        stratified_tasks([CartPoleTask()], 2, rng)
    with pytest.raises(ValueError, match="tasks_per_iter must be even"):
        InContextConfig(tasks_per_iter=3)
    assert InContextConfig().unbalanced is False
    with pytest.raises(ValueError, match="family must include flip"):
        InContextConfig(family="goal_sharp")


def test_in_context_training_is_the_shared_ppo_loop_with_options(monkeypatch):
    from ssm_metarl.adapt import in_context
    from ssm_metarl.rl.loops import TrainResult

    ppo = InContextConfig(unbalanced=True, tasks_per_iter=4, episodes_per_task=3, eval_every=7, keep="last").ppo_config()
    assert (ppo.episodes_per_iter, ppo.episodes_per_task, ppo.task_sampling, ppo.balance_tasks, ppo.validate_every,
            ppo.keep) == (12, 3, "by_world", False, 7, "last")
    calls = []
    monkeypatch.setattr(in_context, "train_ppo", lambda *a, **k: calls.append((a, k)) or TrainResult("ppo", {}, 0))
    result = train_in_context(StateSpaceModel(8, 4, 4, 16), InContextConfig(seed=3))
    (policy, tasks, config), kwargs = calls[0]
    assert config == InContextConfig(seed=3).ppo_config() and kwargs["seed"] == 3
    assert tasks == list(get_family("flip+physics").train) and callable(kwargs["validate"])
    assert result.algorithm == "ppo-in-context" and result.config == InContextConfig(seed=3).to_dict()


def test_incontext_command_checks_its_arguments_before_any_work(capsys):
    from ssm_metarl.cli import main

    for argv, message in ((["--tasks_per_iter", "3"], "must be even"), (["--keep", "worst"], "unknown keep"),
                          (["--family", "physics"], "must include flip")):
        with pytest.raises(SystemExit) as exit_info:
            main(["incontext", *argv, "--out", "unused.pth"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_train_in_context_runs_keeps_its_best_and_leaves_a_log():
    model = StateSpaceModel(8, 4, 4, 16)
    result = train_in_context(model, InContextConfig(max_env_steps=300, eval_every=1, max_seconds=30))
    assert result.history["env_steps"][-1] >= 300 and result.validation["iteration"]
    assert result.final_eval["iteration"] in result.validation["iteration"]


def test_hidden_states_match_the_acting_recurrence():
    model = _model()
    traj = collect(model, [CartPoleTask(max_steps=12)], 2, seed=0)
    states = hidden_states(model, traj)
    hidden = model.init_hidden(2)
    for t in range(3):
        _, hidden = model.step(traj.obs[:, t], hidden)
    assert torch.allclose(states[:, 2], hidden, atol=1e-6)


def test_in_context_artifact_matches_its_card():
    path = artifact_path("cartpole_flip_incontext.pth")
    card = json.loads(path.with_suffix(".json").read_text())
    model = StateSpaceModel.load(path)  # also checks the card's weights_sha256
    assert card["parameters"] == sum(p.numel() for p in model.parameters()) == 6744
    assert card["train_config"]["unbalanced"] is False
    from ssm_metarl.meta.evaluation import TEST_SEED
    tasks = [CartPoleTask(flip=f) for f in (False, True)] * 24
    result = evaluate_in_context(model, tasks, 5, seed=TEST_SEED + 1, greedy=True)
    np.testing.assert_allclose(result.returns, card["evaluation"]["default"]["greedy"]["returns"])
    assert result.world(False).mean >= 490 and result.world(True).mean >= 490


def test_goal_sharp_family_rewards_a_narrow_bump_the_same_in_both_simulators():
    from ssm_metarl import compare_with_gymnasium
    from ssm_metarl.cartpole.tasks import GOAL_SHARP_RANGE, GOAL_SHARP_WIDTH

    family = get_family("goal_sharp")
    goals = [t.goal for t in family.test]
    assert family.max_steps == 200 and all(GOAL_SHARP_RANGE[0] < g < GOAL_SHARP_RANGE[1] for g in goals)
    assert all(t.goal_width == GOAL_SHARP_WIDTH for t in family.train)
    task = CartPoleTask(goal=0.5, goal_width=0.4)
    np.testing.assert_allclose(task.reward([0.5, 0.9]), [1.0, np.exp(-0.5)])
    result = compare_with_gymnasium(family.test[0], n=4, seed=0)
    assert result.same_end and result.max_diff < 1e-6
    with pytest.raises(ValueError, match="goal_width needs a goal"):
        CartPoleTask(goal_width=0.4)
    with pytest.raises(ValueError, match="unknown task family"):
        get_family("goal+goal_sharp")
