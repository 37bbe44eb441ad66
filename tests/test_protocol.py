"""The evaluation protocol: named task sets and strata, two-level CIs, ANIL, the study's
plan, and the results store's reader."""

import json

import numpy as np
import pytest
import torch

from ssm_metarl.cartpole.task_sets import BANDS, goal_band, task_sets
from ssm_metarl.cartpole.tasks import get_family
from ssm_metarl.meta.maml import METHODS, MetaMAML
from ssm_metarl.models.ssm import OUTPUT_HEAD as HEAD
from ssm_metarl.meta.maml_rl import inner_params
from ssm_metarl.models.ssm import StateSpaceModel
from ssm_metarl.protocol import plan
from ssm_metarl.protocol.store import Results
from ssm_metarl.report.two_level import (
    iqm_of_runs,
    two_level_ci,
    two_level_difference,
)

# --- task sets -------------------------------------------------------------------


@pytest.mark.parametrize("family", ["goal", "goal_sharp"])
def test_goal_test_set_has_the_same_count_in_every_band(family):
    test = task_sets(family)["test"]
    counts = {band: len(test.indices("band", band)) for band in BANDS}
    assert set(counts.values()) == {16}, counts


@pytest.mark.parametrize("family", ["goal", "goal_sharp"])
def test_held_out_goals_lie_beyond_every_training_goal(family):
    sets, dist = task_sets(family), get_family(family)
    reach = max(abs(t.goal) for t in dist.sample(4000, seed=5, split="train"))
    held = [abs(t.goal) for t in sets["held_out"].tasks]
    assert min(held) > reach
    assert set(sets["held_out"].strata["band"]) == {"beyond"}


def test_test_and_held_out_never_share_a_task_with_validation():
    sets = task_sets("goal_sharp")
    validation = set(sets["validation"].tasks)
    assert not validation & set(sets["test"].tasks)
    assert not validation & set(sets["held_out"].tasks)


def test_flip_physics_sets_split_worlds_and_physics():
    sets = task_sets("flip+physics")
    for name, physics in (("test", "in range"), ("held_out", "out of range")):
        worlds = sets[name].strata["world"]
        assert worlds.count("flipped") == worlds.count("normal") == 24
        assert set(sets[name].strata["physics"]) == {physics}
    held = sets["held_out"].tasks
    assert all(12.0 <= t.gravity <= 14.0 for t in held)


def test_a_finite_family_says_its_test_set_is_not_held_out():
    sets = task_sets("flip")
    assert "held_out" not in sets
    assert sets["test"].description.startswith("not held out")


def test_sets_are_the_same_every_time():
    assert task_sets("goal")["test"].tasks == task_sets("goal")["test"].tasks


def test_goal_band_edges_and_errors():
    assert goal_band(0.1, "goal_sharp") == "near"
    assert goal_band(-0.75, "goal_sharp") == "middle"
    assert goal_band(1.2, "goal_sharp") == "far"
    assert goal_band(1.6, "goal_sharp") == "beyond"
    with pytest.raises(ValueError, match="no goals"):
        goal_band(0.3, "flip")
    with pytest.raises(ValueError, match="no stratum 'band'"):
        task_sets("flip+physics")["test"].indices("band", "near")


# --- two-level CIs -----------------------------------------------------------------


def test_two_level_ci_widens_with_run_to_run_spread():
    rng = np.random.default_rng(0)
    tasks = rng.normal(100, 10, size=48)
    same = np.tile(tasks, (5, 1))
    spread = same + rng.normal(0, 20, size=(5, 1))
    narrow, wide = two_level_ci(same), two_level_ci(spread)
    assert narrow.n == 5 and narrow.low < narrow.mean < narrow.high
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_two_level_difference_is_paired_by_task():
    rng = np.random.default_rng(1)
    tasks = rng.normal(100, 30, size=(1, 48))  # large task-to-task spread
    a = tasks + 5 + rng.normal(0, 1, size=(5, 48))
    b = tasks + rng.normal(0, 1, size=(5, 48))
    diff = two_level_difference(a, b)
    assert diff.low > 3 and diff.high < 7  # the task spread cancels


def test_two_level_inputs_are_checked():
    with pytest.raises(ValueError, match="runs, tasks"):
        two_level_ci(np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        two_level_ci(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="same tasks"):
        two_level_difference(np.ones((2, 3)), np.ones((2, 4)))


def test_iqm_of_runs_drops_the_extreme_runs():
    scores = np.array([[0.0], [10.0], [11.0], [12.0], [1000.0]])
    assert iqm_of_runs(scores) == pytest.approx(11.0)


# --- ANIL --------------------------------------------------------------------------


def test_anil_adapts_only_the_head():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=4, input_dim=4, output_dim=4, hidden_dim=6)
    maml = MetaMAML(model, inner_lr=0.5, inner_params=HEAD)
    batch = {"x": torch.randn(3, 5, 2, 4)}

    def loss(params, data):
        from ssm_metarl.meta.per_task import unroll

        return unroll(model, params, data["x"]).pow(2).mean()

    adapted = maml.adapt(loss, batch)
    for name, value in model.named_parameters():
        moved = not torch.allclose(adapted[name], value.expand_as(adapted[name]))
        assert moved == name.startswith(HEAD), name
    # the outer gradient still reaches the body through the head's step
    maml.task_losses(loss, adapted, batch).mean().backward()
    assert model.transition[0].weight.grad.abs().sum() > 0


def test_anil_is_a_method_and_names_what_it_adapts():
    assert "anil" in METHODS and inner_params("anil") == HEAD
    assert inner_params("maml") is None
    with pytest.raises(ValueError, match="match none"):
        MetaMAML(StateSpaceModel(), inner_params=("nothing.",))


# --- the plan ----------------------------------------------------------------------


def test_plan_gives_every_method_the_same_budget_and_five_seeds():
    best = {(f, m): u for u in plan.tuning_units() for f, m in [(u.family, u.method)]}
    units = plan.replication_units(best)
    assert len(units) == len(plan.FAMILIES) * len(plan.METHODS) * 5
    assert {u.seed for u in units} == set(plan.SEEDS)
    assert plan.TUNING_SEED not in plan.SEEDS
    assert len({u.name for u in units}) == len(units)


# --- the store ---------------------------------------------------------------------


def _store(tmp_path):
    strata = {"band": ["near", "far", "far"]}
    data = {
        "task_sets": {"goal": {"test": {"strata": strata}}},
        "goal": {
            "goal": {
                "maml": {"test": {"1": [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]}},
                "multitask": {"test": {"1": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}},
            }
        },
        "references": {"goal": {"test": {"oracle": [5.0, 5.0, 5.0]}}},
        "in_context": {},
        "study": {"command": "python -m ssm_metarl replicate"},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return Results.load(path)


def test_store_answers_by_stratum(tmp_path):
    results = _store(tmp_path)
    assert results.matrix("goal", "maml", band="far").shape == (2, 2)
    assert results.estimate("goal", "maml").mean == pytest.approx(2.5)
    assert results.margin("goal", "maml", "multitask", band="far").mean == 2.0
    assert results.card("command").startswith("python -m ssm_metarl")


def test_store_refuses_what_it_does_not_hold(tmp_path):
    results = _store(tmp_path)
    with pytest.raises(ValueError, match="no goal_sharp"):
        results.matrix("goal_sharp", "maml")
    with pytest.raises(ValueError, match="band 'middle'"):
        results.matrix("goal", "maml", band="middle")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Results.load(broken)
    broken.write_text("{}")
    with pytest.raises(ValueError, match="no 'goal' section"):
        Results.load(broken)


def test_a_live_rerun_is_checked_against_the_store(tmp_path):
    results = _store(tmp_path)
    mean, stored = results.check_live([1.0, 2.0, 3.0], "goal", "maml", run=0)
    assert mean == stored.mean == 2.0
    with pytest.raises(AssertionError, match="outside the store"):
        results.check_live([9.0, 9.0, 9.0], "goal", "maml", run=0)
