"""Chapter 7's meta-CartPole (Lu et al., popjaxrl): the batched simulator against its
Gymnasium environment and against Gymnasium's own CartPole, the observation layout,
the projections, the per-trial bookkeeping and the config checks."""
import itertools
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from ssm_metarl.cartpole.meta_cartpole import (
    OBS_CLIP,
    MetaCartPoleBatch,
    MetaCartPoleConfig,
    sample_projections,
)
from ssm_metarl.cartpole.meta_cartpole_env import META_ENV_ID, MetaCartPoleEnv, make_meta_env


def play_until(batch, rng, done):
    """Random actions until done(batch), yielding each step's (actions, obs, reward, trial_done, meta_done)
    while `batch` still holds that step's state."""
    while not done(batch):
        a = rng.integers(0, 2, batch.num_envs)
        yield (a, *batch.step(a))


def reference_cartpole(length=0.5):
    """Gymnasium's own CartPoleEnv with a pole of half-length `length`."""
    env = CartPoleEnv()
    env.length, env.polemass_length = length, env.masspole * length
    env.reset(seed=0)
    return env


def view(projection, state):
    """popjaxrl's observation: the map applied to clip([x, theta])."""
    return projection @ np.clip(np.asarray(state)[[0, 2]], -OBS_CLIP, OBS_CLIP)


@pytest.mark.parametrize("projection", ["random", "fixed", "none"])
def test_env_passes_gymnasium_and_sb3_checkers(projection):
    from gymnasium.utils.env_checker import check_env

    env = MetaCartPoleEnv(MetaCartPoleConfig(projection=projection))
    check_env(env, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 has no complaint either
        sb3_checker.check_env(env)
    assert env.observation_space.shape == (7,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(2)
    # the out-of-distribution options are valid environments too
    check_env(MetaCartPoleEnv(MetaCartPoleConfig(projection=projection, flip_signs=True, length=0.8)), skip_render_check=True)


def test_make_meta_env_registers_the_id_and_overrides_fields():
    env = make_meta_env(projection="none", trials=3)
    assert env.spec.id == META_ENV_ID and META_ENV_ID in gym.registry
    assert env.unwrapped.config == MetaCartPoleConfig(projection="none", trials=3)
    obs, info = env.reset(seed=2)
    assert obs.shape == (7,) and obs.dtype == np.float32 and info["trials_completed"] == 0
    with pytest.raises(ValueError, match="unknown MetaCartPoleConfig field"):
        make_meta_env(trial=3)
    with pytest.raises(ValueError, match="projection"):
        make_meta_env(projection="learned")


def test_batch_and_gymnasium_env_agree_step_for_step_over_two_meta_episodes():
    seed, n = 11, 4
    batch = MetaCartPoleBatch(num_envs=n, autoreset=True)
    obs = batch.reset(seed)
    envs = [make_meta_env(member=i) for i in range(n)]
    for i, env in enumerate(envs):
        env_obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(env_obs, obs[i])
    ends = np.zeros(n, int)
    for a, obs, reward, trial_done, meta_done in play_until(batch, np.random.default_rng(0), lambda b: (b.episodes_completed >= 2).all()):
        for i, env in enumerate(envs):
            if ends[i] >= 2:
                continue
            env_obs, env_reward, terminated, truncated, info = env.step(int(a[i]))
            assert not truncated and terminated == meta_done[i] and info["trial_done"] == trial_done[i]
            assert env_reward == reward[i] == np.float32(1 / 200)
            if terminated:
                # autoreset: the batch shows the next meta-episode, final_obs the last one's end
                np.testing.assert_array_equal(env_obs, batch.final_obs[i])
                np.testing.assert_array_equal(info["trial_returns"], batch.last_trial_returns[i])
                ends[i] += 1
                env_obs, _ = env.reset()  # the member's next meta-episode
            np.testing.assert_array_equal(env_obs, obs[i])
    assert (ends == 2).all()


def test_first_member_shifts_the_batch_and_frozen_batch_matches_the_env():
    big = MetaCartPoleBatch(num_envs=5, autoreset=False)
    small = MetaCartPoleBatch(num_envs=2, autoreset=False)
    np.testing.assert_array_equal(big.reset(7)[3:5], small.reset(7, first_member=3))
    np.testing.assert_array_equal(big.projection[3:5], small.projection)
    env = MetaCartPoleEnv(member=3)
    env.reset(seed=7)
    rng = np.random.default_rng(1)
    for a, obs, reward, trial_done, meta_done in play_until(small, rng, lambda b: b.done.all()):
        if meta_done[0] and not trial_done[0]:  # member 0 ended earlier and stays done
            assert (obs[0] == 0).all() and reward[0] == 0
            continue
        env_obs, env_reward, terminated, _, _ = env.step(int(a[0]))
        np.testing.assert_array_equal(env_obs, obs[0])
        assert terminated == meta_done[0] and env_reward == reward[0]
    assert terminated


def test_physics_and_observations_match_gymnasium_cartpole():
    config = MetaCartPoleConfig(trials=4, length=0.7)
    batch = MetaCartPoleBatch(config, num_envs=3, autoreset=False)
    first = batch.reset(5)
    refs = [reference_cartpole(0.7) for _ in range(3)]
    for i, ref in enumerate(refs):
        ref.state = batch.init_state[i].copy()
        np.testing.assert_allclose(first[i, :4], view(batch.projection[i], ref.state), atol=1e-6)
    t, live = np.zeros(3, int), np.ones(3, bool)
    for a, obs, reward, trial_done, meta_done in play_until(batch, np.random.default_rng(2), lambda b: b.done.all()):
        for i in np.flatnonzero(live):
            state, _, terminated, _, _ = ref_step(refs[i], int(a[i]))
            t[i] += 1
            ended = terminated or t[i] == 200
            assert trial_done[i] == ended
            if ended:  # the trial restarts from the initial state, and that is what is seen
                refs[i].state, refs[i].steps_beyond_terminated, t[i] = batch.init_state[i].copy(), None, 0
            np.testing.assert_allclose(obs[i, :4], view(batch.projection[i], refs[i].state), atol=1e-5)
            assert obs[i, 4] == a[i] and obs[i, 5] == ended and obs[i, 6] == 0
            live[i] = not meta_done[i]


def ref_step(env, action):
    env.step(action)
    x, _, theta, _ = env.state
    return env.state, None, bool(abs(x) > 2.4 or abs(theta) > 12 * 2 * math.pi / 360), None, None


def test_observation_layout_and_flags():
    batch = MetaCartPoleBatch(num_envs=6, autoreset=False)
    first = batch.reset(3)
    assert first.shape == (6, 7) and first.dtype == np.float32
    assert (first[:, 4:] == [0, 0, 1]).all()  # no previous action, no trial ended, first step
    ended = np.zeros(6, int)
    for a, obs, reward, trial_done, meta_done in play_until(batch, np.random.default_rng(4), lambda b: b.done.all()):
        rows = ~meta_done | trial_done  # members still playing on this step
        assert obs.shape == (6, 7) and obs.dtype == np.float32 and reward.dtype == np.float32
        assert (obs[rows, 6] == 0).all()  # first step: only at the meta-episode's first observation
        assert (obs[rows, 4] == a[rows]).all()  # the action just taken
        assert (obs[rows, 5] == trial_done[rows]).all()
        # the observation that says "trial ended" already shows the restart state
        np.testing.assert_array_equal(obs[trial_done, :4], first[trial_done, :4])
        ended += trial_done
    assert (ended == 16).all()  # one trial-ended flag per trial


def test_autoreset_starts_the_next_meta_episode_with_the_first_step_flag():
    batch = MetaCartPoleBatch(MetaCartPoleConfig(trials=2), num_envs=8, autoreset=True)
    batch.reset(0)
    old = batch.projection.copy()
    seen = 0
    for a, obs, reward, trial_done, meta_done in play_until(batch, np.random.default_rng(5), lambda b: (b.episodes_completed >= 1).all()):
        assert (obs[meta_done, 4:] == [0, 0, 1]).all() and (obs[~meta_done, 6] == 0).all()
        assert (batch.final_obs[meta_done, 4:6] == np.c_[a[meta_done], np.ones(meta_done.sum())]).all()
        assert (batch.trial_lengths[meta_done] == 0).all() and (batch.trial[meta_done] == 0).all()
        seen += meta_done.sum()
    assert seen == batch.episodes_completed.sum() >= 8 and np.isfinite(batch.last_trial_returns).all()
    assert not np.allclose(batch.projection, old)  # a new map for the new meta-episode


def test_random_projection_is_orthonormal_times_gain_and_new_each_meta_episode():
    batch = MetaCartPoleBatch(num_envs=16, autoreset=False)
    obs = batch.reset(9)
    p = batch.projection
    np.testing.assert_allclose(np.einsum("bki,bkj->bij", p, p), np.broadcast_to(2 * np.eye(2), (16, 2, 2)), atol=1e-12)
    for i in range(16):
        np.testing.assert_allclose(obs[i, :4], p[i] @ batch.init_state[i, [0, 2]], atol=1e-6)
    assert len({p[i].tobytes() for i in range(16)}) == 16  # one map per member
    batch.reset()
    assert not np.isclose(batch.projection, p).all(axis=(1, 2)).any()  # and per meta-episode
    gain3 = MetaCartPoleBatch(MetaCartPoleConfig(projection_gain=3.0), 4, autoreset=False)
    gain3.reset(9)
    np.testing.assert_allclose(gain3.projection, p[:4] * 3 / math.sqrt(2), atol=1e-12)


def test_fixed_projection_is_one_map_for_every_meta_episode():
    config = MetaCartPoleConfig(projection="fixed")
    batch = MetaCartPoleBatch(config, num_envs=4, autoreset=False)
    batch.reset(1)
    p = batch.projection[0].copy()
    np.testing.assert_allclose(p.T @ p, 2 * np.eye(2), atol=1e-12)
    assert (batch.projection == p).all()
    batch.reset()
    assert (batch.projection == p).all()
    batch.reset(2)
    assert (batch.projection == p).all()
    other = MetaCartPoleBatch(MetaCartPoleConfig(projection="fixed", fixed_seed=1), 1)
    other.reset(1)
    assert not np.allclose(other.projection[0], p)


def test_none_projection_shows_x_theta_and_zeros_and_flips_are_signs():
    batch = MetaCartPoleBatch(MetaCartPoleConfig(projection="none"), num_envs=5, autoreset=False)
    obs = batch.reset(4)
    assert (batch.projection == np.eye(4, 2)).all()
    np.testing.assert_allclose(obs[:, :4], np.c_[batch.init_state[:, [0, 2]], np.zeros((5, 2))], atol=1e-7)
    for _, obs, *_ in itertools.islice(play_until(batch, np.random.default_rng(0), lambda b: b.done.all()), 30):
        live = ~batch.done
        assert live.any()
        np.testing.assert_allclose(obs[live, :2], np.clip(batch.state[live][:, [0, 2]], -OBS_CLIP, OBS_CLIP), atol=1e-6)
        assert (obs[:, 2:4] == 0).all()
    flipped = MetaCartPoleBatch(MetaCartPoleConfig(projection="none", flip_signs=True), 32, autoreset=False)
    flipped.reset(4)
    assert (np.abs(flipped.projection) == np.eye(4, 2)).all()
    assert (flipped.projection[:, 0, 0] < 0).any() and (flipped.projection[:, 1, 1] < 0).any()
    # same seed, same initial states whatever the projection: comparisons are paired
    np.testing.assert_array_equal(flipped.init_state[:5], batch.init_state)


def test_gaussian_projection_has_expected_column_norm_equal_to_gain():
    config = MetaCartPoleConfig(projection_kind="gaussian", projection_gain=2.0)
    normals = np.random.default_rng(0).standard_normal((40_000, 4, 2))
    p = sample_projections(config, normals)
    norms = np.linalg.norm(p, axis=1)
    assert abs(norms.mean() - 2.0) < 0.01
    assert norms.std() > 0.3  # not orthonormal: the norms spread
    assert MetaCartPoleConfig(projection_kind="gaussian").obs_bound == math.inf


def expected_constant_action_length(init_state, action, length=0.5):
    """Steps until Gymnasium's CartPole, started at init_state, ends under one action."""
    ref = reference_cartpole(length)
    ref.state = init_state.copy()
    for t in range(1, 201):
        if ref_step(ref, action)[2]:
            return t
    return 200


@pytest.mark.parametrize("action", [0, 1])
def test_a_constant_policy_scores_the_same_every_trial(action):
    batch = MetaCartPoleBatch(num_envs=8, autoreset=False)
    batch.reset(6)
    steps = play_constant(batch, action)
    for i in range(8):
        length = expected_constant_action_length(batch.init_state[i], action)
        assert (batch.trial_lengths[i] == length).all()  # same start, same actions, same trial
        np.testing.assert_allclose(batch.trial_returns[i], length / 200)
        assert steps[i] == 16 * length
    np.testing.assert_array_equal(batch.last_trial_returns, batch.trial_returns)
    assert (batch.trial_returns.sum(1) < 16).all() and (batch.trial_lengths < 20).all()


def play_constant(batch, action):
    steps, total = np.zeros(batch.num_envs, int), np.zeros(batch.num_envs)
    while not batch.done.all():
        live = ~batch.done
        _, reward, _, _ = batch.step(np.full(batch.num_envs, action))
        steps += live
        total += reward
    np.testing.assert_allclose(total, batch.trial_returns.sum(1), atol=1e-4)  # rewards are the bookkeeping
    return steps


def test_returns_at_most_16_and_a_balancing_controller_scores_exactly_16():
    batch = MetaCartPoleBatch(num_envs=32, autoreset=False)
    batch.reset(8)
    total = sum(r for _, _, r, _, _ in play_until(batch, np.random.default_rng(3), lambda b: b.done.all()))
    assert (total <= 16).all() and (total > 0).all()
    np.testing.assert_allclose(total, batch.trial_returns.sum(1), atol=1e-4)
    # a state-feedback controller (reading the hidden state) balances every trial
    batch.reset(8)
    steps = 0
    while not batch.done.all():
        batch.step((batch.state @ np.array([0.1, 0.3, 3.0, 0.8]) > 0).astype(int))
        steps += 1
    assert steps == 3200 and (batch.trial_returns == 1.0).all() and (batch.trial_returns.sum(1) == 16.0).all()


def test_same_seed_same_numbers():
    def run(seed):
        batch = MetaCartPoleBatch(num_envs=4, autoreset=True)
        out = [batch.reset(seed)]
        out += [o for _, o, *_ in play_until(batch, np.random.default_rng(0), lambda b: (b.episodes_completed >= 1).all())]
        out.append(batch.reset())
        return np.concatenate(out)

    a, b = run(12), run(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:4], run(13)[:4])


@pytest.mark.parametrize(
    "field, value",
    [("trials", 0), ("trial_steps", 2.5), ("projection", "learned"), ("projection_gain", -1.0),
     ("projection_gain", math.inf), ("fixed_seed", -1), ("projection_kind", "uniform"),
     ("flip_signs", "yes"), ("length", 0.0)],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MetaCartPoleConfig(**{field: value})


def test_bad_batch_use_raises_clear_errors():
    with pytest.raises(ValueError, match="num_envs"):
        MetaCartPoleBatch(num_envs=0)
    with pytest.raises(ValueError, match="config"):
        MetaCartPoleBatch(config={"trials": 3})
    batch = MetaCartPoleBatch(num_envs=2)
    with pytest.raises(ValueError, match="reset"):
        batch.step(np.zeros(2, int))
    with pytest.raises(ValueError, match="seed"):
        batch.reset()
    batch.reset(0)
    with pytest.raises(ValueError, match="actions"):
        batch.step(np.array([0, 2]))
    with pytest.raises(ValueError, match="actions"):
        batch.step(np.zeros(3, int))
    with pytest.raises(ValueError, match="seed"):
        batch.reset(-1)
    with pytest.raises(ValueError, match="member"):
        MetaCartPoleEnv(member=-1)
