"""Chapter 6's strong protocol, rliable intervals and the matched card table (fast)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from ssm_metarl.bench import card_protocol as cp
from ssm_metarl.bench import rliable_stats as rs
from ssm_metarl.bench import strong_protocol as sp
from ssm_metarl.bench import strong_rows as sr

rliable = pytest.importorskip("rliable")


# --- rliable intervals -----------------------------------------------------------------
def test_the_iqm_ci_holds_the_task_spread_even_when_every_run_is_the_same():
    tasks = np.random.default_rng(0).normal(100.0, 40.0, size=48)
    matrix = np.tile(tasks, (5, 1))  # five identical runs: the old CI had zero width
    ci = rs.iqm_ci(matrix)
    rng = np.random.default_rng(1)
    task_only = [rs.iqm(tasks[rng.integers(0, 48, 48)]) for _ in range(2000)]
    low, high = np.quantile(task_only, [0.025, 0.975])
    assert ci["low"] < ci["mean"] < ci["high"] and ci["n"] == 240
    assert ci["high"] - ci["low"] >= 0.9 * (high - low)  # Monte-Carlo slack only
    from rliable import library, metrics

    _, runs_only = library.get_interval_estimates(
        {"x": matrix}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=200
    )
    assert np.ptp(runs_only["x"]) == 0  # the bug this replaces


def test_the_intervals_are_reproducible_and_leave_numpys_global_state_alone():
    matrix = np.random.default_rng(2).normal(size=(3, 10))
    state = np.random.get_state()[1].copy()
    assert rs.iqm_ci(matrix, n_resamples=300) == rs.iqm_ci(matrix, n_resamples=300)
    assert np.array_equal(np.random.get_state()[1], state)
    assert rs.iqm_ci(matrix, n_resamples=300, seed=1) != rs.iqm_ci(matrix, n_resamples=300)


def test_the_probability_of_improvement_is_rliables_and_one_half_against_itself():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 12)), rng.normal(0.5, size=(5, 12))
    same = rs.probability_of_improvement(x, x, n_resamples=500)
    assert same["mean"] == pytest.approx(0.5) and same["low"] <= 0.5 <= same["high"]
    from rliable import metrics

    p = rs.probability_of_improvement(x, y, n_resamples=500)
    assert p["mean"] == pytest.approx(metrics.probability_of_improvement(x, y))
    assert rs._improvement(np.stack([x, y], -1)) == pytest.approx(p["mean"])
    assert p["low"] <= p["mean"] <= p["high"] and p["n"] == 12
    with pytest.raises(ValueError, match="as many runs"):
        rs.probability_of_improvement(x, y[:3])


# --- the verdict, the matched table, stable -------------------------------------------
def test_the_verdict_has_one_rule():
    inside = {"mean": 9.0, "low": 8.5, "high": 10.0}
    assert cp.card_verdict("9.4 ± 0.7", inside) == "reproduced"
    far = {"mean": 500.0, "low": 500.0, "high": 500.0}
    assert cp.card_verdict("9.4 ± 0.7", far) == "refuted (measured 500.0)"
    assert cp.card_verdict("74.3", far) == "refuted (measured 500.0)"
    assert cp.card_verdict("20-30", {"mean": 21.5, "low": 17.9, "high": 25.5}) == (
        "reproduced"
    )
    assert cp.card_verdict("200-500", far) == "reproduced"  # the CI overlaps the range
    assert cp.card_verdict("20-30", {"mean": 35.0, "low": 31.0, "high": 40.0}) == (
        "refuted (measured 35.0)"
    )
    assert cp.card_verdict("47 min", far).startswith("not comparable: ")
    assert cp.card_verdict("–", far).startswith("not comparable: ")


def _est(mean):
    return {"mean": mean, "low": mean - 1.0, "high": mean + 1.0, "n": 5}


def _card_section():
    """The card protocol's rows and settings, with made-up numbers."""
    rows = [("random policy", "20-30", cp._setting("random"), 21.0)]
    rows.append(("this model, no adaptation", "9.4 ± 0.7", cp._setting("maml"), 500.0))
    for steps, lr in cp.CARD_CONFIGS:
        for kind in ("standard", "hybrid"):
            setting = cp._setting("maml", kind, steps, lr)
            rows.append((f"{kind}, {steps} steps at {lr:g}", "13.5", setting, 500.0))
    for c in (0, 1, 3):
        rows.append((f"RSI, {c} cycles", "74.3", {**cp._setting("rsi"), "cycles": c}, 500.0))
    return {
        "rows": [
            {
                "name": name,
                "reported": reported,
                "setting": setting,
                "std": {"mean": m, "std": 0.0},
                "ci": _est(m),
            }
            for name, reported, setting, m in rows
        ]
    }


def _strong_section(rsi_unchanged: bool):
    """Strong rows exactly as the protocol names and sets them, made-up numbers."""
    rows = []
    for i, spec in enumerate(sp.strong_settings(rsi_unchanged=rsi_unchanged)):
        setting = spec["setting"].to_dict(spec["method"])
        also = spec.get("also", [])
        rows.append(
            {"name": spec["name"], "setting": setting, "also": also, "ci": _est(i), "iqm": _est(i)}
        )
    return {"rows": rows}


@pytest.mark.parametrize("rsi_unchanged", [True, False])
def test_the_matched_table_pairs_a_card_row_only_with_the_strong_row_of_its_setting(
    rsi_unchanged,
):
    card, strong = _card_section(), _strong_section(rsi_unchanged)
    table = cp.card_table(card, strong, peers=None)
    assert [list(r) for r in table] == [list(cp.CARD_TABLE_COLUMNS)] * len(table)
    column = cp.CARD_TABLE_COLUMNS[-1]
    for card_row, out in zip(card["rows"], table):
        cell = out[column]
        same = [
            r for r in strong["rows"]
            if r["setting"] == card_row["setting"] or card_row["setting"] in r["also"]
        ]
        assert len(same) <= 1
        if same:
            assert cell.startswith(same[0]["name"] + ": "), (card_row["name"], cell)
        else:
            assert cell == "no matching setting", (card_row["name"], cell)
    cells = {r["card row"]: r[column] for r in table}
    assert cells["standard, 5 steps at 0.01"].startswith("MAML, standard 5 steps at 0.01:")
    assert cells["hybrid, 10 steps at 0.001"].startswith("MAML, hybrid 10 steps at 0.001:")
    assert cells["this model, no adaptation"].startswith("MAML, no adaptation")
    rsi = cells["RSI, 3 cycles"]
    assert rsi.startswith("MAML, no adaptation (also RSI") if rsi_unchanged else (
        rsi == "no matching setting"
    )
    dqn = next(r for r in table if r["card row"].startswith("DQN"))
    assert dqn["card protocol (mean ± std)"] == "–" and dqn[column] == "no matching setting"


def test_the_strong_rows_never_repeat_a_setting():
    specs = sp.strong_settings(rsi_unchanged=True)
    keys = [s["setting"].to_dict(s["method"]) for s in specs]
    keys += [a for s in specs for a in s.get("also", [])]
    assert len({tuple(sorted(k.items())) for k in keys}) == len(keys)
    assert all(s["setting"].steps == 0 for s in specs if "RSI" in s["name"])


def test_stable_and_reproduced_are_separate_columns():
    card = _card_section()
    live = [dict(r, ci=_est(r["ci"]["mean"] + 0.5)) for r in card["rows"]]
    live[1]["ci"] = _est(400.0)  # this model's live mean left the shipped CI
    peers = {"sb3_dqn": {"final": _est(480.0), "seeds": 10, "budget": 50_000}}
    table = cp.card_table(card, None, peers=peers, live=live)
    verdicts = [r["verdict"] for r in table]
    stable = [r["live re-run"] for r in table]
    assert not any("stable" in v or "changed" in v for v in verdicts)
    assert not any("reproduced" in s or "refuted" in s for s in stable)
    assert table[1]["verdict"].startswith("refuted") and stable[1].startswith("changed")
    assert table[2]["verdict"].startswith("refuted") and stable[2] == "stable"
    dqn, ppo = table[-2], table[-1]
    assert dqn["verdict"] == "reproduced" and "10 seeds, 50,000 steps" in dqn[
        "card protocol (mean ± std)"
    ]
    assert ppo["card protocol (mean ± std)"] == "–"
    words = [r["stable"] for r in cp.stable_rows(live, card["rows"])]
    assert words.count("stable") == len(live) - 1


# --- scoring: the study's numbers ------------------------------------------------------
def test_the_strong_scoring_is_the_studys_store_for_one_model():
    from ssm_metarl.protocol.store import Results

    torch.set_num_threads(1)
    model, card = sr.load_run("maml", 0)
    settings = [sr.Setting("none"), sr.Setting("standard", 1)]
    scored = sr.score_run(model, card, "maml", settings, sr.strong_tasks())
    store = Results.load()
    for s in settings:  # one batch of 48 tasks: the same sampled actions as the study's
        kept = store.matrix("goal", "maml", "test", s.steps)[0]
        np.testing.assert_allclose(scored["returns"][s], kept, atol=1e-3)


def test_hybrid_after_one_step_is_standard_after_one_step():
    from ssm_metarl.adapt.adapters import (
        HybridAdaptationConfig,
        HybridAdapter,
        StandardAdaptationConfig,
        StandardAdapter,
    )
    from ssm_metarl.cartpole.rollout import collect

    model, card = sr.load_run("maml", 0)
    tasks = sr.strong_tasks(3)
    support = collect(model, tasks, 2, seed=0)
    lr = card["adaptation_lr"]
    plain = StandardAdapter(model, StandardAdaptationConfig(lr=lr, steps=1))
    hybrid = HybridAdapter(
        model,
        HybridAdaptationConfig(lr=lr, steps=1, experience_weight=sr.REPLAY_WEIGHT),
        sr.replay_buffer(model),
    )
    a, b = plain.adapt_params(support), hybrid.adapt_params(support)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


def test_the_store_check_catches_a_row_that_drifted():
    class Store:
        def matrix(self, family, method, set_name, k):
            return np.full((5, 4), 10.0)

    row = {"method": "maml", "setting": sr.Setting("standard", 1).to_dict("maml")}
    assert sp.check_against_store([{**row, "per_run": [[10.0] * 4]}], Store()) == 0
    with pytest.raises(AssertionError, match="results store"):
        sp.check_against_store([{**row, "per_run": [[10.2] * 4]}], Store())
    other = {"method": "maml", "setting": sr.Setting("standard", 5, 0.01).to_dict("maml")}
    assert sp.check_against_store([{**other, "per_run": [[99.0] * 4]}], Store()) == 0


def test_more_strong_runs_than_replicated_models_fail_before_any_work(monkeypatch):
    from ssm_metarl.bench import cli

    monkeypatch.setattr(cp, "card_protocol", lambda **k: pytest.fail("ran the card"))
    args = argparse.Namespace(protocol=["strong"], seeds=6, seed=0, quiet=True, threads=1)
    with pytest.raises(ValueError, match="--seeds must be at most 5"):
        cli.check_benchmark(args)  # the flags are checked before any protocol runs
