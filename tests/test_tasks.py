"""Task families, their splits, and the Gymnasium environments of chapter 2."""
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ssm_metarl.cartpole.envs import ENV_ID, make_env, make_vector_env
from ssm_metarl.cartpole.tasks import FAMILIES, PHYSICS_RANGES, CartPoleTask, get_family

ALL_FAMILIES = ["standard", "flip", "goal", "physics", "flip+physics", "flip+goal", "goal+physics",
                "flip+goal+physics"]




def test_default_task_is_cartpole_v1():
    reference = gym.make("CartPole-v1").unwrapped
    env = make_env(CartPoleTask()).unwrapped
    for name in ("gravity", "masscart", "masspole", "length", "force_mag", "total_mass", "polemass_length"):
        assert getattr(env, name) == pytest.approx(getattr(reference, name))
    assert make_env(CartPoleTask()).spec.max_episode_steps == 500


@pytest.mark.parametrize("kwargs, word", [
    ({"masspole": -0.1}, "masspole"), ({"masscart": 0.0}, "masscart"), ({"length": float("nan")}, "length"),
    ({"gravity": "9.8"}, "gravity"), ({"goal": 3.0}, "goal"), ({"flip": 1}, "flip"), ({"max_steps": 0}, "max_steps"),
])
def test_bad_task_parameters_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CartPoleTask(**kwargs)


def test_unknown_family_lists_valid_choices():
    for bad in ("flipped", "standard+flip", "flip+flip", ""):
        with pytest.raises(ValueError, match="valid choices: standard, flip, goal, physics"):
            get_family(bad)
    with pytest.raises(ValueError, match="valid choices"):
        get_family("flip").sample(3, seed=0, split="dev")


def test_family_names_are_order_insensitive():
    assert get_family("physics+flip").name == "flip+physics"
    assert get_family("physics+flip").train == get_family("flip+physics").train


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_splits_are_fixed_reproducible_and_disjoint(name):
    family, again = get_family(name), get_family(name)
    assert family.train == again.train and family.validation == again.validation and family.test == again.test
    assert family.sample(5, seed=3) == again.sample(5, seed=3)
    train, val, test = set(family.train), set(family.validation), set(family.test)
    if family.finite:  # one or two distinct tasks: every split is the whole support
        support = {CartPoleTask(flip=f) for f in ((False, True) if "flip" in name else (False,))}
        assert train == val == test == support
    else:
        assert len(train) == 64 and len(val) == 16 and len(test) == 32
        assert not (train & val) and not (train & test) and not (val & test)
        assert family.sample(5, seed=3) != family.sample(5, seed=4)
    if "goal" in name:
        assert all(t.goal is not None and -1 <= t.goal <= 1 and t.max_steps == 200 for t in family.test)
    if "flip" in name:
        flips = [t.flip for t in family.train]
        assert any(flips) and not all(flips)


def test_physics_test_tasks_come_from_held_out_ranges():
    family = get_family("physics")
    for split, tasks in (("train", family.train + family.validation), ("test", family.test)):
        for task in tasks:
            for name, (low, high) in PHYSICS_RANGES[split].items():
                assert low <= getattr(task, name) <= high
    for name, (low, high) in PHYSICS_RANGES["test"].items():
        train_low, train_high = PHYSICS_RANGES["train"][name]
        assert high <= train_low or low >= train_high, f"{name}: test range overlaps the training range"


@pytest.mark.parametrize("task", [CartPoleTask(), CartPoleTask(flip=True, goal=-0.5, length=0.8, masspole=0.2)])
def test_make_env_passes_gymnasium_check_env(task):
    env = make_env(task, render_mode="rgb_array")
    assert env.spec.id == ENV_ID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CartPole's own infinite Box bounds warn in stock Gymnasium too
        check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (400, 600, 3)
    env.close()


def test_flip_swaps_left_and_right():
    normal, flipped = make_env(CartPoleTask()), make_env(CartPoleTask(flip=True))
    obs_n, _ = normal.reset(seed=7)
    obs_f, _ = flipped.reset(seed=7)
    np.testing.assert_array_equal(obs_n, obs_f)
    pushed_right, *_ = normal.step(1)
    flipped_right, *_ = flipped.step(1)
    assert flipped_right[1] < obs_f[1] < pushed_right[1]  # action 1 accelerates the flipped cart to the left
    normal.reset(seed=7)
    pushed_left, *_ = normal.step(0)
    np.testing.assert_array_equal(flipped_right, pushed_left)


def test_goal_reward_single_and_vector():
    task = CartPoleTask(goal=1.0)
    env = make_env(task)
    env.reset(seed=0)
    for action in (1, 1, 0, 1):
        obs, reward, terminated, *_ = env.step(action)
        assert reward == pytest.approx(1.0 - abs(float(obs[0]) - 1.0) / 2.4, abs=1e-6)
        assert reward < 0.6  # the cart is near 0, about 1 m from the goal
    assert task.reward(1.0) == 1.0 and CartPoleTask().reward(2.0) == 1.0
    venv = make_vector_env([task, CartPoleTask()])
    venv.reset(seed=0)
    obs, reward, *_ = venv.step(np.array([1, 1]))
    assert reward[0] == pytest.approx(1.0 - abs(float(obs[0, 0]) - 1.0) / 2.4, abs=1e-6)
    assert reward[1] == 1.0


def test_vector_env_takes_per_environment_physics():
    tasks = get_family("physics").test[:3]
    venv = make_vector_env(tasks)
    for name in ("gravity", "masscart", "length"):
        np.testing.assert_array_equal(getattr(venv, name), [getattr(t, name) for t in tasks])
    with pytest.raises(ValueError, match="at least one task"):
        make_vector_env([])


def test_every_family_component_draws_what_its_description_says():
    """Each component of FAMILIES changes exactly the task fields its description names."""
    changed = {}
    for name in FAMILIES:
        tasks = get_family(name).sample(20, seed=0)
        default = CartPoleTask()
        changed[name] = {field for field in default.to_dict()
                         if any(getattr(t, field) != getattr(default, field) for t in tasks)}
    assert changed["standard"] == set()
    assert changed["flip"] == {"flip"}
    assert changed["goal"] == {"goal", "max_steps"}
    assert changed["physics"] == set(PHYSICS_RANGES["train"])
    for name, fields in changed.items():  # the description mentions what the component draws
        assert name == "standard" or all(f.split("_")[0][:4] in FAMILIES[name].lower() for f in fields
                                         if f != "max_steps"), (name, fields, FAMILIES[name])


@pytest.mark.filterwarnings("ignore:.*already returned terminated")  # the broken simulator ends episodes late
def test_compare_with_gymnasium_finds_the_simulators_equal_and_can_fail(monkeypatch):
    from ssm_metarl.cartpole import envs

    result = envs.compare_with_gymnasium(CartPoleTask(flip=True), n=4)
    assert result.max_diff <= 1e-6 and result.same_end and result.steps > 4 * 30
    # a simulator with a wrong constant is caught
    monkeypatch.setattr(envs.CartPoleTaskVectorEnv, "step", _gravity_off(envs.CartPoleTaskVectorEnv.step))
    broken = envs.compare_with_gymnasium(CartPoleTask(), n=4)
    assert broken.max_diff > 1e-3


def _gravity_off(step):
    def wrong(self, action):
        self.gravity = self.gravity * 0.5
        return step(self, action)
    return wrong
