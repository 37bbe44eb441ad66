"""Timing helpers (ssm_metarl.report.timing) behind `python -m ssm_metarl bench` and the chapters' speed figures."""
import pytest
import torch

from ssm_metarl.bench import speed as benchmark
from ssm_metarl.report import timing


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
    assert benchmark.available() == expected == ["maml", "memory", "rl", "rollout", "ssm"]
    assert all(callable(getattr(benchmark, f"bench_{name}")) for name in expected)


def test_forward_backward_variants_compute_the_same_output():
    from ssm_metarl.models.s4d_speed import forward_backward_variants

    variants = forward_backward_variants(2, 3, 4, 33, names=("loop", "plain scan", "scan", "fft"))
    outputs = {name: run() for name, run in variants.items()}
    for name, y in outputs.items():
        torch.testing.assert_close(y, outputs["loop"], atol=1e-4, rtol=1e-4, msg=name)


# --- chapter 6: the agent benchmark (python -m ssm_metarl benchmark) -------------------------------------------
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ssm_metarl.bench import cli as bench_report  # noqa: E402
from ssm_metarl.bench import card_protocol, rliable_stats  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "benchmark_results.json"


def _tiny_results():
    row = lambda name, values: {"name": name, "reported": "9.4 ± 0.7", "returns": values,  # noqa: E731
                                "std": {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))},
                                "ci": {"mean": float(np.mean(values)), "low": min(values), "high": max(values)}}
    strong_row = {**row("MAML, standard 1 step", [1.0, 3.0]), "adapted": True, "env_steps": 2000,
                  "iqm": {"mean": 2.0, "low": 1.0, "high": 3.0}}
    return {"command": "python -m ssm_metarl benchmark --protocol card --out x",
            "card": {"what": "tiny", "rows": [row("random policy", [20.0, 22.0])]},
            "strong": {"what": "tiny", "rows": [strong_row]}}


def test_the_card_protocol_uses_the_cards_adaptation_configs_and_model():
    assert card_protocol.CARD_CONFIGS == ((5, 0.01), (10, 0.01), (10, 0.001))
    assert card_protocol.CARD_MODEL == "cartpole_goal_maml"  # the alias target of cartpole_hybrid_real_model
    assert card_protocol.CARD_REPORTED["hybrid"] == "37.8 ± 17.1" and card_protocol.CARD_REPORTED["rsi_3"] == "74.3"


def test_write_outputs_writes_the_json_the_plots_and_the_table(tmp_path):
    results = _tiny_results()
    paths = bench_report.write_outputs(results, tmp_path)
    assert json.loads(paths["json"].read_text()) == results
    assert paths["adaptation"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["table"].read_text()
    assert "| random policy | refuted (measured 21.0) | 9.4 ± 0.7 | 21.0 ± 1.4, CI [20.0, 22.0] |" in table
    assert "| MAML, standard 1 step | 2.0 [1.0, 3.0] | 2.0 [1.0, 3.0] |" in table


def test_update_readme_rewrites_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n{bench_report.README_START}\nold typed numbers\n{bench_report.README_END}\nafter\n")
    assert bench_report.update_readme(readme, _tiny_results()) is True
    text = readme.read_text()
    assert "old typed numbers" not in text and text.startswith("# T\n\nbefore\n") and text.endswith("after\n")
    assert "`python -m ssm_metarl benchmark --protocol card --out x`" in text and "| random policy |" in text
    assert bench_report.update_readme(readme, _tiny_results()) is False  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no benchmark section"):
        bench_report.update_readme(readme, _tiny_results())


def test_iqm_drops_the_outer_quartiles_and_the_probability_of_improvement_counts_ties_half():
    assert rliable_stats.iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(3.5)
    x, y = np.array([[2.0, 1.0], [2.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    p = rliable_stats.probability_of_improvement(x, y, n_resamples=50)
    assert p["mean"] == pytest.approx(0.75) and p["low"] <= 0.75 <= p["high"]
    ci = rliable_stats.iqm_ci(np.arange(16.0).reshape(4, 4), n_resamples=50)
    assert ci["low"] <= ci["mean"] <= ci["high"] and ci["n"] == 16


def test_the_benchmark_command_is_in_the_cli():
    from ssm_metarl.cli import build_parser

    args = build_parser().parse_args(["benchmark", "--protocol", "card", "strong", "--out", "x"])
    assert args.protocol == ["card", "strong"] and args.threads == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--protocol", "best", "--out", "x"])


@pytest.mark.skipif(not SHIPPED.exists(), reason="models/benchmark_results.json not shipped")
def test_the_shipped_json_has_every_section_and_the_readme_shows_it():
    results = json.loads(SHIPPED.read_text())
    assert results["command"].startswith("python -m ssm_metarl benchmark")
    for section in ("card", "strong"):
        for row in results[section]["rows"]:
            assert {"name", "reported", "ci", "returns"} <= set(row) and row["ci"]["low"] <= row["ci"]["high"]
    assert {r["name"] for r in results["card"]["rows"]} >= {"random policy", "this model, no adaptation"}
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(bench_report.README_START), readme.index(bench_report.README_END)
    assert bench_report.results_markdown(results) in readme[start:end], "README section out of sync: rerun with --readme"


@pytest.mark.skipif(not SHIPPED.exists(), reason="models/benchmark_results.json not shipped")
def test_the_card_protocol_reproduces_the_shipped_rows_within_their_ci():
    shipped = json.loads(SHIPPED.read_text())["card"]["rows"]
    with timing.torch_threads(1):
        live = card_protocol.card_protocol()["rows"]  # ~15 s: the "done when" check
    assert [r["name"] for r in live] == [r["name"] for r in shipped]
    for new, old in zip(live, shipped):
        assert old["ci"]["low"] - 1e-9 <= new["ci"]["mean"] <= old["ci"]["high"] + 1e-9, new["name"]


# --- chapter 6: the speed section and the peers run's section (--protocol speed peers) ---------------------------
from ssm_metarl.bench import speed_section  # noqa: E402

PEERS_RUN = ROOT / "models" / "peers" / "peers.json"


@pytest.mark.skipif(not SHIPPED.exists(), reason="models/benchmark_results.json not shipped")
def test_the_shipped_speed_section_holds_every_figure_as_a_ratio_with_a_ci():
    results = json.loads(SHIPPED.read_text())
    names = [row["name"] for row in results["speed"]["rows"]]
    for part in ("rollout throughput", "meta-gradient, looped vs batched", "chunked scan vs loop", "FFT vs loop",
                 "over its floor"):
        assert any(part in name for name in names), part
    for row in results["speed"]["rows"]:
        r = row["ratio"]
        assert 0 < r["low"] <= r["mean"] <= r["high"] and r["n"] >= 3, row["name"]
    assert sum(results["speed"]["seconds"].values()) < 150  # the budget for the section: ~2 minutes
    table = bench_report.results_markdown(results)
    faster, floor = table.index("**Speed: how many times faster**"), table.index("**Speed: how many times its floor")
    assert "over its floor" not in table[faster:floor] and "over its floor" in table[floor:]


def test_the_speed_section_at_tiny_sizes_gives_every_row():
    sizes = {"rollout": {"naive_steps": 50, "rounds": 2, "policies": 1}, "maml": {"episodes": 1, "repeats": 2, "orders": (True,)},
             "ssm": {"lengths": (64,), "rounds": 2}}
    speed = speed_section.speed_section(sizes=sizes)
    assert len(speed["rows"]) == 1 + 1 + 3  # rollout (1 policy), meta-gradient (first order), scan/FFT/floor
    assert all(row["ratio"]["mean"] > 0 for row in speed["rows"])
    assert speed["sizes"]["ssm"]["lengths"] == [64]


def test_the_peers_protocol_is_in_the_cli_and_reads_a_peers_run():
    from ssm_metarl.cli import build_parser

    args = build_parser().parse_args(["benchmark", "--protocol", "speed", "peers", "--out", "x"])
    assert args.protocol == ["speed", "peers"] and args.peers_run == "models/peers/peers.json"
    assert bench_report.SECTIONS == {name: (name,) for name in bench_report.PROTOCOLS}


@pytest.mark.skipif(not (SHIPPED.exists() and PEERS_RUN.exists()), reason="the benchmark or peers run not shipped")
def test_the_shipped_peers_section_is_the_shipped_peers_run_summarised():
    from ssm_metarl.bench.peers_report import peers_summary
    from ssm_metarl.protocol.store import Results

    shipped = json.loads(SHIPPED.read_text())["peers"]
    maml = Results.load().matrix("goal_sharp", "maml", "held_out", k=1)
    again = json.loads(json.dumps(peers_summary(json.loads(PEERS_RUN.read_text()), maml)))
    assert again == shipped
    assert all(r["seeds"] >= 10 for r in shipped["cartpole"])  # the issue: >= 10 training seeds per peer
    table = bench_report.results_markdown({"peers": shipped})
    assert "**Peers on CartPole-v1**" in table and "**Memory learners" in table


@pytest.mark.skipif(not (SHIPPED.exists() and PEERS_RUN.exists()), reason="the benchmark or peers run not shipped")
def test_merging_the_shipped_json_keeps_every_section_and_lists_earlier_runs(tmp_path):
    from ssm_metarl.cli import main

    assert main(["benchmark", "--protocol", "peers", "--peers_run", str(PEERS_RUN), "--merge", str(SHIPPED),
                 "--out", str(tmp_path), "--quiet"]) == 0
    results = json.loads((tmp_path / "benchmark_results.json").read_text())
    shipped = json.loads(SHIPPED.read_text())
    assert {"card", "strong", "peers", "speed"} <= set(results)
    assert results["speed"] == shipped["speed"] and results["peers"] == shipped["peers"]
    assert results["merged"] and all("command" in run for run in results["merged"].values())
