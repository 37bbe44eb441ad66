"""Timing helpers (ssm_metarl.timing) behind `python -m ssm_metarl bench` and the chapters' speed figures."""
import pytest
import torch

from ssm_metarl import benchmark, timing


def test_time_rounds_runs_every_variant_warmup_plus_rounds_times_in_turn():
    calls = []
    times = timing.time_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up first, then round-robin
    assert set(times) == {"a", "b"} and all(len(t) == 3 for t in times.values())


def test_time_rounds_measures_the_time_each_call_takes(monkeypatch):
    clock = iter([0.0, 2.0, 10.0, 10.5, 20.0, 23.0, 30.0, 30.25])  # start/stop of a, b, a, b
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    times = timing.time_rounds({"a": lambda: None, "b": lambda: None}, rounds=2, warmup=0)
    assert times == {"a": [2.0, 3.0], "b": [0.5, 0.25]}


def test_time_interleaved_keeps_each_variants_best_round(monkeypatch):
    monkeypatch.setattr(timing, "time_rounds", lambda fns, rounds, warmup: {"a": [3.0, 1.0, 2.0]})
    assert timing.time_interleaved({"a": None}, repeats=3) == {"a": 1.0}


def test_speedup_is_the_mean_per_round_ratio_with_a_ci():
    times = {"loop": [2.0, 4.0, 6.0, 8.0], "fast": [1.0, 1.0, 1.0, 1.0]}
    estimate = timing.speedup(times, "loop", "fast")
    assert estimate.mean == pytest.approx(5.0) and estimate.n == 4
    assert 2.0 <= estimate.low < 5.0 < estimate.high <= 8.0


def test_speed_words_follow_the_ci():
    times = {"loop": [2.0, 4.0, 6.0, 8.0], "fast": [1.0, 1.0, 1.0, 1.0], "slow": [4.0, 8.0, 12.0, 16.0],
             "same": [2.0, 3.0, 7.0, 8.0]}  # ratios 1, 4/3, 6/7, 1: the CI straddles 1
    assert timing.speed_words(times, "loop", "fast").endswith(" faster than")
    assert timing.speed_words(times, "loop", "fast").startswith("5.0× (95% CI ")
    assert timing.speed_words(times, "loop", "slow") == "2.0× (95% CI 2.0–2.0×) slower than"
    assert timing.speed_words(times, "loop", "same") == "not measurably faster or slower than"


def test_torch_threads_restores_the_thread_count_even_on_error():
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with pytest.raises(RuntimeError):
        with timing.torch_threads(target):
            assert torch.get_num_threads() == target
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_available_lists_exactly_the_bench_functions():
    expected = sorted(name[len("bench_"):] for name in dir(benchmark) if name.startswith("bench_"))
    assert benchmark.available() == expected == ["maml", "rl", "rollout", "ssm"]
    assert all(callable(getattr(benchmark, f"bench_{name}")) for name in expected)


def test_forward_backward_variants_compute_the_same_output():
    from ssm_metarl.s4d import forward_backward_variants

    variants = forward_backward_variants(2, 3, 4, 33, names=("loop", "plain scan", "scan", "fft"))
    outputs = {name: run() for name, run in variants.items()}
    for name, y in outputs.items():
        torch.testing.assert_close(y, outputs["loop"], atol=1e-4, rtol=1e-4, msg=name)
