"""Chapter 7's study read back (bench.memory_report) and its command's checks."""

import json
import zlib

import numpy as np
import pytest

from ssm_metarl.bench.memory_report import (
    in_context_gain,
    ranking,
    read_cards,
    read_summary,
    score_matrix,
    steps_to_solve,
    summarize,
    trial_curves,
)
from ssm_metarl.bench.memory_study import EXTRA, VARIANTS, Unit, load_unit, plan, rounded
from ssm_metarl.cli import main
from ssm_metarl.io.artifacts import models_dir
from ssm_metarl.io.checkpoint_errors import CheckpointError
from ssm_metarl.report.stats import Estimate


def write_cards(root, task, core, level, learns=0.0, seeds=3, variant=""):
    rng = np.random.default_rng(zlib.crc32(f"{task}{core}{variant}".encode()))
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for seed in range(seeds):
        trials = level + learns * np.linspace(0, 1, 16) + rng.normal(0, 0.01, (20, 16))
        card = {"task": task, "core": core, "seed": seed, "variant": variant, "parameters": 6744, "width": 32,
                "test_trials": trials.tolist(), "ood_trials": {"pole 1.0": trials.tolist()}, "seconds": 1.0,
                "greedy_trials": (trials + 0.1).tolist(),
                "curve": [{"env_steps": 1000 * (k + 1), "seconds": k + 1.0, "return": 16 * level * (k + 1) / 4}
                          for k in range(8)]}
        (runs / f"{Unit(task, core, seed, variant).name}.json").write_text(json.dumps(card))


def test_ranking_orders_cores_and_measures_differences_to_the_best(tmp_path):
    write_cards(tmp_path, "meta_random", "gru", 0.2)
    write_cards(tmp_path, "meta_random", "lstm", 0.5)
    groups = read_cards(tmp_path)
    assert [c["seed"] for c in groups[("meta_random", "gru")]] == [0, 1, 2]
    rows = ranking(groups, "meta_random")
    assert [r["core"] for r in rows] == ["lstm", "gru"]
    assert rows[0]["mean"].mean == pytest.approx(8.0, abs=0.1)  # 16 trials x 0.5
    assert rows[1]["vs_best"].high < 0 and rows[0]["vs_best"].mean == 0
    assert score_matrix(groups[("meta_random", "gru")]).shape == (3, 20)


def test_in_context_gain_sees_a_rise_from_the_first_trials_to_the_last(tmp_path):
    write_cards(tmp_path, "meta_random", "diag_ssm", 0.2, learns=0.3)
    write_cards(tmp_path, "meta_random", "gru", 0.2)
    groups = read_cards(tmp_path)
    rise = in_context_gain(groups[("meta_random", "diag_ssm")])
    flat = in_context_gain(groups[("meta_random", "gru")])
    assert rise.low > 0.25 and flat.low < 0 < flat.high
    curve = trial_curves(groups[("meta_random", "diag_ssm")])
    assert len(curve) == 16 and curve[-1].mean > curve[0].mean


def test_steps_to_solve_is_where_the_running_mean_first_reaches_the_bar():
    returns = [None, 10.0, 14.0, 15.0, 15.0, 15.0, 16.0, 16.0]
    curve = [{"env_steps": 10 * (k + 1), "seconds": k / 2, "return": r} for k, r in enumerate(returns)]
    # running means over 5 updates: 10.8, 13.8, 15.0 -> first at the 7th update
    assert steps_to_solve({"curve": curve}) == (70, 3.0)
    assert steps_to_solve({"curve": curve[:6]}) is None  # 10.8 and 13.8 stay under 14
    assert steps_to_solve({"curve": [{"env_steps": 10, "seconds": 1, "return": 16.0}]}) is None  # too short


def test_the_plan_names_every_unit_once_and_adds_the_variants():
    units = plan()
    names = [u.name for u in units]
    assert len(names) == len(set(names)) == 5 * (3 * 4 + len(EXTRA))
    assert "meta_random_diag_ssm_uncut_s4" in names and "stateless_gru_s0" in names
    assert {v for _, _, v in EXTRA} == set(VARIANTS)
    assert len(plan(extra=False)) == 60 and plan(cores=("gru",), seeds=1) == [
        Unit(t, "gru", 0) for t in ("stateless", "flip_physics", "meta_random")
    ]


def test_summarize_ranks_tasks_and_reads_variants_back_as_estimates(tmp_path, monkeypatch):
    import ssm_metarl.bench.memory_study as study

    monkeypatch.setattr(study, "TASKS", {"meta_random": {}})
    monkeypatch.setattr(study, "OOD", {"pole 1.0": {}})
    monkeypatch.setattr(study, "VARIANTS", {"uncut": {}})
    write_cards(tmp_path, "meta_random", "gru", 0.2)
    write_cards(tmp_path, "meta_random", "lstm", 0.5)
    write_cards(tmp_path, "meta_random", "lstm", 0.2, learns=0.3, variant="uncut")
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(rounded(summarize(tmp_path))))
    summary = read_summary(path)
    best, other = summary["tasks"]["meta_random"]
    assert best["core"] == "lstm" and best["improvement"] is None and isinstance(best["mean"], Estimate)
    assert other["improvement"].mean == 1.0 and other["vs_best"].high < 0
    assert len(summary["meta_random"]["gru"]["trials"]) == 16
    greedy = summary["meta_random"]["gru"]["greedy"]
    assert greedy["score"].mean == pytest.approx(summary["meta_random"]["gru"]["score"].mean + 1.6)
    assert set(summary["meta_random"]["gru"]["ood"]) == {"pole 1.0"}
    uncut = summary["variants"]["uncut"]["lstm"]
    assert uncut["in_context"].low > 0.25 and uncut["vs_main"].high < 0  # it rises, but lower
    curve = best["curve"]
    assert len(curve["steps"]) == 100 and curve["steps"][-1] == 8000.0 and curve["seconds"][-1] == 8.0
    assert curve["return_by_steps"] == sorted(curve["return_by_steps"])  # these curves only rise


def test_load_unit_rebuilds_a_shipped_policy_and_refuses_broken_weights(tmp_path):
    shipped = models_dir() / "memory"
    policy, card = load_unit(shipped, "meta_random_diag_ssm_s0")
    assert sum(p.numel() for p in policy.parameters()) == card["parameters"] == 6919
    assert policy.core_name == "diag_ssm" and not policy.training
    runs = tmp_path / "runs"
    runs.mkdir()
    for suffix in (".json", ".pth"):
        (runs / f"x{suffix}").write_bytes((shipped / "runs" / f"meta_random_gru_s0{suffix}").read_bytes())
    (runs / "y.json").write_text((runs / "x.json").read_text().replace('"gru"', '"lstm"'))
    (runs / "y.pth").write_bytes((runs / "x.pth").read_bytes())
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_unit(tmp_path, "y")  # the card says LSTM, the weights are a GRU's
    (runs / "x.pth").write_bytes((runs / "x.pth").read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="damaged"):
        load_unit(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="no unit 'z'"):
        load_unit(tmp_path, "z")


def test_the_memory_command_refuses_a_broken_card_before_any_work(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        main(["memory", "--root", str(tmp_path)])
    assert exit_.value.code == 2 and "not a unit card" in capsys.readouterr().err


def test_the_memory_command_appends_its_run_to_the_history_and_writes_the_summary(tmp_path):
    from ssm_metarl.bench.memory_study import OOD

    runs = tmp_path / "runs"
    write_cards(tmp_path, "stateless", "gru", 0.9, seeds=1)
    write_cards(tmp_path, "meta_random", "gru", 0.2, seeds=1)
    card = json.loads((runs / "meta_random_gru_s0.json").read_text())
    card["ood_trials"] = {name: card["test_trials"] for name in OOD}
    (runs / "meta_random_gru_s0.json").write_text(json.dumps(card))
    history = {"env_steps": [1000, 2000], "seconds": [1.0, 2.0], "mean_return": [20.0, 30.0]}
    flip = {"task": "flip_physics", "core": "gru", "seed": 0, "seconds": 1.0, "history": history, "width": 32,
            "test_returns": list(range(32)), "ood_returns": {"held-out physics": list(range(48))}}
    (runs / "flip_physics_gru_s0.json").write_text(json.dumps(flip))
    (tmp_path / "memory.json").write_text(json.dumps({"history": [{"command": "earlier", "wall_seconds": 60.0}]}))
    args = ["memory", "--root", str(tmp_path), "--seeds", "1", "--cores", "gru", "--workers", "1"]
    assert main(args) == 0
    study = json.loads((tmp_path / "memory.json").read_text())
    # every unit was read back: nothing ran, so the history is as it was
    assert [h["command"] for h in study["history"]] == ["earlier"]
    assert study["wall_seconds"] == 60.0 and len(study["units"]) == 3
    summary = read_summary(tmp_path / "summary.json")
    assert [r["core"] for r in summary["tasks"]["flip_physics"]] == ["gru"]
    assert summary["tasks"]["flip_physics"][0]["mean"].mean == pytest.approx(15.5)
    assert summary["tasks"]["flip_physics"][0]["ood"]["held-out physics"].mean == pytest.approx(23.5)


def test_bench_memory_times_every_memory_side_by_side(monkeypatch):
    import argparse

    import ssm_metarl.bench.speed_memory as speed

    monkeypatch.setattr(speed, "LENGTH", 40)
    monkeypatch.setattr(speed, "TRAIN_BATCH", 2)
    monkeypatch.setattr(speed, "ACT_BATCH", 8)
    monkeypatch.setattr(speed, "ACT_STEPS", 4)
    result = speed.bench_memory(argparse.Namespace(seed=0, rounds=2))
    assert [r["core"] for r in result["cores"]] == ["card_ssm", "diag_ssm", "gru", "lstm"]
    assert all(r["train_steps_per_second"] > 0 and r["act_steps_per_second"] > 0 for r in result["cores"])
    assert set(result["diag_ssm_trains_faster_than"]) == {"card_ssm", "gru", "lstm"}
    for key in ("diag_ssm_scan_vs_recurrence", "lstm_onednn_vs_without"):
        ratio = result[key]
        assert 0 < ratio["low"] <= ratio["mean"] <= ratio["high"] and ratio["n"] == 2
    assert result["cores"][0]["train_vs_card"]["mean"] == 1.0
