"""The timing helpers behind `python -m ssm_metarl bench` and the chapters' speed figures."""
import pytest

from ssm_metarl import benchmark


def test_time_rounds_runs_every_variant_warmup_plus_rounds_times_in_turn():
    calls = []
    times = benchmark.time_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up first, then round-robin
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) >= 0 for t in times.values())


def test_time_interleaved_keeps_each_variants_best_round(monkeypatch):
    monkeypatch.setattr(benchmark, "time_rounds", lambda fns, rounds, warmup: {"a": [3.0, 1.0, 2.0]})
    assert benchmark.time_interleaved({"a": None}, repeats=3) == {"a": 1.0}


def test_speedup_is_the_mean_per_round_ratio_with_a_ci():
    times = {"loop": [2.0, 4.0, 6.0, 8.0], "fast": [1.0, 1.0, 1.0, 1.0]}
    estimate = benchmark.speedup(times, "loop", "fast")
    assert estimate.mean == pytest.approx(5.0) and estimate.n == 4
    assert 2.0 <= estimate.low < 5.0 < estimate.high <= 8.0


def test_every_benchmark_is_listed():
    assert {"ssm", "rollout", "rl", "maml"} <= set(benchmark.available())
