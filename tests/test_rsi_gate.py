"""Chapter 5's acceptance gate and its measurements: the sign-flip test, the t-test and
Optuna's WilcoxonPruner against scipy, the gate at its nominal error on synthetic nulls,
the gate study's bookkeeping, the same-compute baseline's budget, and the rsi-gate /
rsi-baseline commands' checks."""

import json

import numpy as np
import pytest
from scipy import stats

from ssm_metarl import StateSpaceModel, artifact_path, load_card
from ssm_metarl.cli import main
from ssm_metarl.report.stats import proportion_ci
from ssm_metarl.rsi.baseline import spent_env_steps, start_hyperparameters
from ssm_metarl.rsi.climb import acceptance_gains, candidate_points, climb_rows, same_compute
from ssm_metarl.rsi.decision import decide
from ssm_metarl.rsi.gate import paired_gains, signflip_pvalue, t_pvalue, wilcoxon_pruner_prunes
from ssm_metarl.rsi.gate_study import GATES, acceptance_rates, loop_gate_rate
from ssm_metarl.rsi.search import RSIConfig


def test_signflip_pvalue_matches_scipys_exact_permutation_test():
    rng = np.random.default_rng(1)
    for shift in (0.0, 2.0, 6.0):
        gains = rng.normal(shift, 8, 10)  # 2^10 patterns: scipy enumerates them all
        exact = stats.permutation_test((gains,), np.mean, permutation_type="samples", alternative="greater",
                                       n_resamples=10_000).pvalue
        assert signflip_pvalue(gains, seed=3) == pytest.approx(exact, abs=0.01)


def test_signflip_pvalue_is_never_zero_and_counts_the_observed_pattern():
    gains = np.full(12, 5.0)  # every flip is lower except the observed one
    p = signflip_pvalue(gains, n_flips=999)
    assert 0 < p <= 0.01
    assert signflip_pvalue(-gains, n_flips=999) == 1.0


def test_t_and_wilcoxon_pruner_agree_with_scipy():
    rng = np.random.default_rng(2)
    for _ in range(20):
        current = rng.normal(100, 20, 16)
        candidate = current + rng.normal(rng.uniform(-5, 15), 10, 16)
        d = candidate - current
        assert t_pvalue(d) == pytest.approx(stats.ttest_1samp(d, 0, alternative="greater").pvalue)
        # the pruner prunes the worse trial when the signed-rank test finds it worse
        p = stats.wilcoxon(current - candidate, alternative="less", zero_method="zsplit").pvalue
        assert wilcoxon_pruner_prunes(candidate, current, p_threshold=0.025) == (p < 0.025 and d.mean() > 0)


def test_paired_gains_names_bad_input():
    with pytest.raises(ValueError, match="same length"):
        paired_gains([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        paired_gains([1.0, float("nan")], [1.0, 2.0])
    assert paired_gains([3.0, 4.0], [1.0, 1.0], margin=1.0).tolist() == [1.0, 2.0]


def null_scores(n, tasks=32, seed=0):
    """Scores of one model, many times: a per-task level plus skewed, heavy-tailed noise
    (returns are clipped and skewed, so the test must not rely on normality)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(20, 190, tasks)
    return level + 15 * (rng.exponential(1.0, (n, tasks)) - 1.0) * rng.choice([1, 3], size=(n, tasks))


def test_the_signflip_gate_holds_its_nominal_rate_on_a_skewed_null():
    rates = acceptance_rates(null_scores(1600), gains=(0.0,), alpha=0.025,
                             gates={"signflip": GATES["sign-flip test (the gate)"]})
    rate = rates["signflip"][0.0]
    assert rate.n == 800 and rate.low <= 0.025 <= rate.high, rate


def test_gate_rates_rise_with_a_known_gain():
    rates = acceptance_rates(null_scores(200, seed=4), gains=(0.0, 10.0, 40.0))
    for name, by_gain in rates.items():
        means = [by_gain[g].mean for g in (0.0, 10.0, 40.0)]
        assert means == sorted(means), name
        assert by_gain[40.0].mean == 1.0, name
    assert rates["naive (mean went up)"][0.0].mean > 0.3  # noise passes the naive rule often


def test_loop_gate_rate_runs_decide_on_triples_with_its_bonferroni_split():
    rate = loop_gate_rate(null_scores(300, seed=5), RSIConfig())
    assert rate.n == 100 and 0 <= rate.mean <= 0.1
    shifted = null_scores(30, seed=6)
    shifted[1::3] += 60  # the first candidate of every triple is much better
    assert loop_gate_rate(shifted, RSIConfig()).mean == 1.0


def test_decide_with_the_signflip_rule_reports_p_values_and_respects_the_margin():
    rng = np.random.default_rng(0)
    current = rng.normal(100, 10, 32)
    gain = {"trial": 0, "returns": current + rng.normal(8, 5, 32)}
    chosen, reason, verdicts = decide(current, [gain], RSIConfig())
    assert chosen == 0 and "sign-flip p" in reason and verdicts[0]["p_value"] < 0.025
    assert decide(current, [gain], RSIConfig(margin=12.0))[0] is None


def test_too_few_validation_tasks_for_the_signflip_rule_are_refused():
    with pytest.raises(ValueError, match="too few for the sign-flip rule.*>= 7 tasks"):
        RSIConfig(validation_tasks=6, candidates=2)
    RSIConfig(validation_tasks=6, candidates=2, rule="ci")  # the bootstrap rule has no floor
    RSIConfig(validation_tasks=7, candidates=2)


def test_proportion_ci_is_a_wilson_interval():
    est = proportion_ci([True] * 10 + [False] * 390)
    assert est.mean == pytest.approx(0.025) and est.n == 400
    assert est.low == pytest.approx(0.01362, abs=1e-4) and est.high == pytest.approx(0.04538, abs=1e-4)
    none = proportion_ci([False] * 400)
    assert none.low == 0.0 and 0 < none.high < 0.01
    with pytest.raises(ValueError, match="non-empty"):
        proportion_ci([])


def test_spent_env_steps_counts_every_trained_candidate():
    history = [{"candidates": [{"train": {"env_steps": 100}}, {"train": None}]},
               {"candidates": [{"train": {"env_steps": 50}}, {"train": {"env_steps": 7}}]}]
    assert spent_env_steps(history) == 157


def test_start_hyperparameters_repeat_the_start_models_training():
    card = {"name": "m", "train_config": {"inner_lr": 0.3, "outer_lr": 0.003, "max_grad_norm": 1.0,
                                          "tasks_per_epoch": 20}}
    assert start_hyperparameters(card) == {"inner_lr": 0.3, "outer_lr": 0.003, "max_grad_norm": 1.0,
                                           "tasks_per_epoch": 20, "grow_state": 0, "grow_hidden": 0}
    with pytest.raises(ValueError, match="no train_config"):
        start_hyperparameters({"name": "m"})


@pytest.mark.parametrize("argv, message", [
    (["rsi-gate", "--repeats", "4"], "--repeats"),
    (["rsi-gate", "--out", "gate.txt"], ".json"),
    (["rsi-baseline", "--run", "missing.json", "--ship", "x"], "not a readable run card"),
])
def test_the_measurement_commands_check_their_flags_first(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_rsi_baseline_refuses_a_card_that_is_not_a_run(capsys, tmp_path):
    card = tmp_path / "model.json"
    card.write_text(json.dumps({"name": "model", "train_config": {}}))
    with pytest.raises(SystemExit) as exit_:
        main(["rsi-baseline", "--run", str(card), "--ship", str(tmp_path / "b")])
    assert exit_.value.code == 2 and "not an rsi --ship card" in capsys.readouterr().err


# -- what a shipped run did (rsi.climb) and the shipped artifacts ----------------------------------
def synthetic_run(test_means, accepted):
    rng = np.random.default_rng(0)
    history = []
    for cycle, (mean, acc) in enumerate(zip(test_means, accepted)):
        returns = (mean + rng.normal(0, 1, 48)).tolist()
        est = {"mean": mean, "low": mean - 1, "high": mean + 1, "n": 48, "confidence": 0.95}
        cands = [{"status": "accepted" if acc else "rejected", "improvement": est, "p_value": 0.001,
                  "validation_mean": mean, "train": {"env_steps": 100}},
                 {"status": "rejected", "improvement": {**est, "mean": -1.0}, "p_value": 0.9,
                  "validation_mean": mean - 5, "train": {"env_steps": 120}}]
        history.append({"cycle": cycle, "validation": est, "candidates": cands, "test": est,
                        "test_returns": returns, "accepted": 0 if acc else None})
    return {"history": history, "train_env_steps": 220 * len(history), "wall_seconds": 60.0}


def test_acceptance_gains_pair_each_accepted_model_with_the_one_it_replaced():
    run = synthetic_run([60.0, 60.0, 90.0, 90.0], [False, False, True, False])
    start = (50.0 + np.zeros(48)).tolist()
    # cycle 0 "accepted" nothing here, but the kept model's test differs from the start's
    gains = acceptance_gains(run, start)
    assert [g["cycle"] for g in gains] == [2]
    assert gains[0]["test_gain"].mean == pytest.approx(30.0, abs=0.5)  # 90 over the 60 it replaced
    rows = climb_rows(run)
    assert [r[4] for r in rows] == ["kept", "kept", "accepted", "kept"] and rows[2][3] == "0.0010"
    assert len(candidate_points(run)) == 8


def test_same_compute_sets_loop_and_baseline_side_by_side():
    runs = [synthetic_run([80.0, 100.0], [True, True]) for _ in range(3)]
    baselines = [{"test_returns": (90.0 + np.zeros(48)).tolist(), "train": {"env_steps": 450, "seconds": 30.0},
                  "test": {"mean": 90.0, "low": 89.0, "high": 91.0, "n": 48, "confidence": 0.95}}
                 for _ in range(3)]
    versus = same_compute(runs, baselines)
    assert versus["difference"].mean == pytest.approx(10.0, abs=0.5) and versus["difference"].low > 0
    assert versus["loop_env_steps"] == [440] * 3 and versus["baseline_minutes"] == [0.5] * 3


SHIPPED = [artifact_path(f"rsi_goal_climb_s{s}.json") for s in range(3)]


@pytest.mark.parametrize("seed", range(3))
def test_shipped_runs_and_their_baselines_spent_the_same_steps(seed):
    run = json.loads(SHIPPED[seed].read_text())
    baseline = load_card(f"rsi_goal_baseline_s{seed}")
    assert run["train_env_steps"] == spent_env_steps(run["history"]) == baseline["budget_env_steps"]
    # the baseline trains whole outer steps: it may overshoot by less than one of them
    assert 0 <= baseline["train"]["env_steps"] - run["train_env_steps"] < 0.05 * run["train_env_steps"]
    assert run["wall_seconds"] < 30 * 60 and run["rsi_config"]["max_env_steps"] == run["budget_env_steps"]
    for entry in run["archive"]:  # every accepted model ships and loads
        assert StateSpaceModel.load(artifact_path(entry["path"])).config.input_dim == 4


def test_the_card_tables_rsi_rows_score_the_model_in_use_after_each_cycle():
    from ssm_metarl.bench.card_protocol import rsi_model_after

    card = {"archive": [{"cycle": -1, "path": "run/initial.pth"}, {"cycle": 0, "path": "run/cycle_000.pth"},
                        {"cycle": 2, "path": "run/cycle_002.pth"}]}
    assert [rsi_model_after(card, n) for n in (0, 1, 2, 3)] == [
        "run/initial", "run/cycle_000", "run/cycle_000", "run/cycle_002"]


@pytest.mark.parametrize("start, message", [("no_such_model.pth", "not in models/"),
                                            ("rsi_goal_climb_s0.pth", "no train_config")])
def test_rsi_baseline_refuses_a_run_whose_start_it_cannot_repeat(start, message, capsys, tmp_path):
    card = tmp_path / "run.json"
    card.write_text(json.dumps({"name": "run", "history": [], "rsi_config": {}, "initial_model": start}))
    with pytest.raises(SystemExit) as exit_:
        main(["rsi-baseline", "--run", str(card), "--ship", str(tmp_path / "b")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
