"""The shipped replication study: every model behind the results store is on disk with
its card, the methods had one budget and five seeds, and the store says what its cards
and measurements say."""

import json

import numpy as np
import pytest

from ssm_metarl.io.artifacts import models_dir
from ssm_metarl.models.ssm import StateSpaceModel
from ssm_metarl.protocol import plan
from ssm_metarl.protocol.gather import replicated_units
from ssm_metarl.protocol.measure import measurement_path
from ssm_metarl.protocol.store import Results

ROOT = models_dir() / "replication"


@pytest.fixture(scope="module")
def results():
    return Results.load()


@pytest.fixture(scope="module")
def units():
    return replicated_units(ROOT)


def test_five_seeds_per_method_and_family_at_one_budget(units):
    cards = [json.loads(u.path(ROOT).with_suffix(".json").read_text()) for u in units]
    assert len(cards) == len(plan.FAMILIES) * len(plan.METHODS) * 5
    budgets = {
        tuple(c["train_config"][k] for k in plan.BUDGET) for c in cards
    }
    assert budgets == {tuple(plan.BUDGET.values())}
    for family in plan.FAMILIES:
        for method in plan.METHODS:
            seeds = [u.seed for u in units if (u.family, u.method) == (family, method)]
            assert sorted(seeds) == list(plan.SEEDS)


def test_every_replicated_model_loads_and_matches_its_card(units):
    for unit in units[:: len(plan.SEEDS)]:  # one seed of each method and family
        model = StateSpaceModel.load(unit.path(ROOT))  # checks the card's sha256
        assert sum(p.numel() for p in model.parameters()) == 6744


def test_tuning_chose_each_methods_step_sizes_on_validation(results):
    tuned = results.card("tuned")
    tuning = [json.loads(p.read_text()) for p in (ROOT / "tuning").glob("*.json")]
    for key, chosen in tuned.items():
        family, method = key.split("/")
        runs = [c for c in tuning if (c["unit"]["family"], c["unit"]["method"]) == (
            family,
            method,
        )]
        best = max(runs, key=lambda c: c["validation_score"])["unit"]
        assert (best["outer_lr"], best["inner_lr"]) == (
            chosen["outer_lr"],
            chosen["inner_lr"],
        )
        assert all(c["unit"]["seed"] == plan.TUNING_SEED for c in runs)


def test_the_store_holds_each_models_own_measurement(results, units):
    for unit in units[:: len(plan.SEEDS)]:
        measured = json.loads(measurement_path(unit, ROOT).read_text())["returns"]
        stored = results.matrix(unit.family, unit.method, "test", k=1)[unit.seed]
        assert np.allclose(stored, measured["test"]["1"], atol=1e-3)


def test_the_store_records_its_command_and_wall_time(results):
    command = results.card("command").split()
    assert command[:3] == ["python", "-m", "ssm_metarl"] and "replicate" in command
    seconds = results.card("wall_seconds")["study_wall_seconds"]
    assert 0 < seconds <= 60 * 60, "the study must run in an hour on 2 cores"


def test_retention_and_from_scratch_cover_every_seed_and_band(results):
    retention = results.data["retention"]
    assert [r["unit"]["seed"] for r in retention] == list(plan.SEEDS)
    runs = results.data["from_scratch"]["runs"]
    assert len({r["index"] for r in runs}) >= 12 and len({r["seed"] for r in runs}) >= 3
