"""Chapter 7's study read back (bench.memory_report) and its command's checks."""

import json

import numpy as np
import pytest

from ssm_metarl.bench.memory_report import in_context_gain, ranking, read_cards, score_matrix, steps_to_solve, trial_curves
from ssm_metarl.cli import main


def write_cards(root, task, core, level, learns=0.0, seeds=3):
    rng = np.random.default_rng(hash((task, core)) % 2**32)
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for seed in range(seeds):
        trials = level + learns * np.linspace(0, 1, 16) + rng.normal(0, 0.01, (20, 16))
        card = {"task": task, "core": core, "seed": seed, "test_trials": trials.tolist(), "ood_trials": {},
                "curve": [{"env_steps": 1000 * (k + 1), "return": 16 * level * (k + 1) / 4} for k in range(4)]}
        (runs / f"{task}_{core}_s{seed}.json").write_text(json.dumps(card))


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


def test_steps_to_solve_is_the_first_solved_point_or_none():
    assert steps_to_solve({"curve": [{"env_steps": 10, "return": None}, {"env_steps": 20, "return": 15.5}]}) == 20
    assert steps_to_solve({"curve": [{"env_steps": 10, "return": 3.0}]}) is None


def test_the_memory_command_refuses_a_broken_card_before_any_work(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        main(["memory", "--root", str(tmp_path)])
    assert exit_.value.code == 2 and "not a unit card" in capsys.readouterr().err
