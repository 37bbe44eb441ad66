"""Chapter 7's PPO over meta-episodes: GAE cut at trial ends, a short training run that
moves the policy, evaluation by trial."""

import json

import numpy as np
import pytest
import torch

from ssm_metarl.cartpole.meta_cartpole import MetaCartPoleConfig
from ssm_metarl.models.memory import MemoryPolicy
from ssm_metarl.rl.meta_ppo import MetaPPOConfig, evaluate_trials, train_meta_ppo, trial_gae


def test_trial_gae_cuts_the_bootstrap_at_a_done_step():
    rewards = torch.ones(4, 1)
    values = torch.zeros(4, 1)
    dones = torch.tensor([[False], [True], [False], [False]])
    adv, targets = trial_gae(rewards, values, torch.tensor([10.0]), dones, gamma=0.5, lam=1.0)
    # steps 0-1 form one trial: 1 + 0.5 * 1, then the cut; steps 2-3 reach the bootstrap 10
    assert adv[:, 0].tolist() == pytest.approx([1.5, 1.0, 1 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10])
    assert torch.equal(targets, adv + values)


def test_a_short_run_changes_the_policy_and_logs_rows():
    policy = MemoryPolicy("gru", 7, seed=0)
    before = [p.detach().clone() for p in policy.parameters()]
    cfg = MetaPPOConfig(envs=8, rollout=32, minibatches=2, epochs=1, max_env_steps=8 * 32 * 3)
    rows = train_meta_ppo(policy, MetaCartPoleConfig(projection="none"), cfg, seed=0)
    assert len(rows) == 3 and rows[-1]["env_steps"] == 768
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_evaluate_trials_returns_every_trial_and_is_seeded():
    policy = MemoryPolicy("diag_ssm", 7, seed=1)
    env = MetaCartPoleConfig(projection="random")
    a = evaluate_trials(policy, env, episodes=3, seed=5)
    assert a.shape == (3, 16) and np.all((a > 0) & (a <= 1))
    assert np.array_equal(a, evaluate_trials(policy, env, episodes=3, seed=5))


def test_meta_ppo_config_names_bad_values():
    with pytest.raises(ValueError, match="multiple of minibatches"):
        MetaPPOConfig(envs=10, minibatches=4)
    with pytest.raises(ValueError, match="lr"):
        MetaPPOConfig(lr=0.0)


def test_a_memory_study_unit_trains_scores_and_reads_back(tmp_path, monkeypatch):
    import ssm_metarl.bench.memory_study as study

    monkeypatch.setattr(study, "TASKS", {"meta_random": {"steps": 20_000, "check_every": 10_000}})
    monkeypatch.setattr(study, "TEST_EPISODES", 4)
    monkeypatch.setattr(study, "CHECK_EPISODES", 2)
    (unit,) = study.plan(cores=("gru",), seeds=1)
    card = study.run_unit(unit, tmp_path)
    assert card["name"] == "meta_random_gru_s0" and len(card["checks"]) >= 1
    assert np.array(card["test_trials"]).shape == (4, 16) and set(card["ood_trials"]) == set(study.OOD)
    assert np.array(card["greedy_trials"]).shape == (4, 16)
    assert (card["input_dim"], card["inputs"], card["width"], card["parameters"]) == (7, "obs", 32, 6691)
    assert (tmp_path / "runs" / "meta_random_gru_s0.pth").exists()
    assert study.run_unit(unit, tmp_path) == card  # a finished unit is read back, not retrained
    path = tmp_path / "runs" / "meta_random_gru_s0.json"
    path.write_text(json.dumps({k: v for k, v in card.items() if k not in ("ood_trials", "greedy_trials", "width")}))
    assert study.run_unit(unit, tmp_path) == card  # missing OOD scores come from the weights
    assert json.loads(path.read_text()) == card
