"""Recursive self-improvement (chapter 5): weight transfer, the acceptance rule, the safety monitor,
checkpoints and resume, the history's JSON, Optuna workers sharing one study, and the CLI."""
import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("optuna")

from ssm_metarl import StateSpaceModel, artifact_path, load_checkpoint  # noqa: E402
from ssm_metarl.cli import main  # noqa: E402
from ssm_metarl.meta.per_task import expand_params  # noqa: E402
from ssm_metarl.rsi.agent import CycleReport, RecursiveSelfImprovementAgent, RSIConfig, RSIHalted, decide  # noqa: E402
from ssm_metarl.rsi.search import Candidate  # noqa: E402
from ssm_metarl.rsi.session import Session  # noqa: E402
from ssm_metarl.rsi.study import SharedStudy  # noqa: E402
from ssm_metarl.rsi.verify import encode_model  # noqa: E402
from ssm_metarl.rsi.worker import run_trial  # noqa: E402

TINY = dict(candidates=3, train_epochs=0, validation_tasks=8, test_tasks=4, episodes=2, eval_episodes=2)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return StateSpaceModel(8, 4, 4, 16)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- weight transfer ---------------------------------------------------------------------------
@pytest.mark.parametrize("grow", [(8, 0), (0, 8), (8, 16), (16, 16)])
def test_a_widened_model_computes_exactly_the_same_function(grow):
    torch.manual_seed(0)
    model = StateSpaceModel(32, 4, 4, 64)  # the card's sizes, grown in the blocks the search proposes
    wide = model.widened(model.state_dim + grow[0], model.hidden_dim + grow[1], seed=3)
    assert (wide.state_dim, wide.hidden_dim) == (model.state_dim + grow[0], model.hidden_dim + grow[1])
    x = torch.randn(3, 40, 4)
    assert torch.equal(model.outputs(x)[0], wide.outputs(x)[0])  # bit for bit
    per_task = torch.randn(2, 3, 40, 4)  # the task-batched path MAML uses
    assert torch.equal(model.outputs(per_task, expand_params(dict(model.named_parameters()), 2))[0],
                       wide.outputs(per_task, expand_params(dict(wide.named_parameters()), 2))[0])
    # ... and it can learn: the zeroed blocks get gradients
    wide.outputs(x)[0].square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in wide.parameters())


def test_other_sizes_agree_to_rounding():
    # Bit-exactness needs the matrix products to sum in the same order; with other sizes
    # (here tiny ones, grown by odd amounts) the outputs agree to rounding, shown in float64.
    model = tiny_model().double()
    wide = model.widened(13, 21, seed=3)
    x = torch.randn(3, 40, 4, dtype=torch.float64)
    torch.testing.assert_close(model.outputs(x)[0], wide.outputs(x)[0], rtol=0, atol=1e-12)


def test_widening_never_shrinks_and_leaves_the_original_alone():
    model = tiny_model()
    before = weights(model)
    with pytest.raises(ValueError, match="only grows"):
        model.widened(4, 16)
    model.widened(16, 32)
    assert same(before, weights(model))


# -- the acceptance rule ---------------------------------------------------------------------------
def test_decide_accepts_only_a_ci_separated_gain():
    rng = np.random.default_rng(0)
    current = rng.normal(100, 10, 32)
    cfg = RSIConfig()
    noise = {"trial": 0, "returns": current + rng.normal(0.5, 5, 32)}
    gain = {"trial": 1, "returns": current + rng.normal(20, 5, 32)}
    assert decide(current, [{"trial": 0, "returns": current.copy()}], cfg)[0] is None  # identical: not better
    chosen, reason, verdicts = decide(current, [noise, gain], cfg)
    assert chosen == 1 and "accepted trial 1" in reason and verdicts[0]["status"] == "rejected"
    assert verdicts[1]["improvement"]["confidence"] == pytest.approx(0.975)  # Bonferroni over 2 candidates
    assert decide(current, [noise], RSIConfig(rule="naive"))[0] == (0 if np.mean(noise["returns"] - current) > 0 else None)
    assert decide(current, [gain], RSIConfig(margin=100.0))[0] is None
    unsafe = {"trial": 2, "returns": None, "unsafe": "non-finite weights (x)"}
    chosen, reason, verdicts = decide(current, [unsafe], cfg)
    assert chosen is None and verdicts[0]["status"] == "unsafe" and "non-finite" in verdicts[0]["reason"]


# -- the agent -------------------------------------------------------------------------------------
def adversary():
    """A proposer that only offers broken (NaN), worse (random) or identical models."""
    count = iter(range(10 ** 6))

    def trainer(current, params, config, seed, heartbeat):
        kind = next(count) % 3
        model = copy.deepcopy(current.model)
        if kind == 0:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        elif kind == 1:
            model = tiny_model(seed=1000 + seed % 1000)
        return Candidate(model, current.inner_lr), {"kind": ["nan", "worse", "identical"][kind]}

    return trainer


def test_invariant_an_adversarial_proposer_never_changes_the_current_weights(tmp_path):
    model = tiny_model()
    before = weights(model)
    agent = RecursiveSelfImprovementAgent(model, "goal", config=RSIConfig(**TINY), run_dir=tmp_path, trainer=adversary())
    for _ in range(2):
        report = agent.improve()
        assert report.accepted is None
        statuses = {c["train"]["kind"] if c["train"] else "nan": c["status"] for c in report.candidates}
        assert statuses["nan"] == "unsafe" and statuses["identical"] == "rejected"
        assert any("non-finite" in c["reason"] for c in report.candidates)
    assert same(before, weights(agent.current_model)) and agent.current_model is model


def test_only_broken_proposals_halt_the_loop_after_the_allowed_emergency_stops(tmp_path):
    agent = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**{**TINY, "candidates": 1}),
                                          run_dir=tmp_path, trainer=adversary())  # its first proposal is NaN
    first = agent.improve()
    assert first.emergency and first.candidates[0]["status"] == "unsafe"
    def crashing(*args):
        raise FloatingPointError("loss became NaN")

    agent.trainer = crashing
    with pytest.raises(RSIHalted, match="2 consecutive emergency stops"):
        agent.improve()  # a raising trainer is a failed proposal, not a crash; the halt comes after the cycle
        agent.improve()
    again = RecursiveSelfImprovementAgent(tiny_model(), run_dir=tmp_path)
    with pytest.raises(RSIHalted):
        again.improve()


def test_performance_floor_halts_with_a_clear_message(tmp_path):
    agent = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=tmp_path,
                                          trainer=adversary())
    agent.floor = 1e9
    with pytest.raises(RSIHalted, match="performance floor.*below the floor"):
        agent.improve()


def better_trainer(current, params, config, seed, heartbeat):
    """Proposes the shipped meta-trained goal model: far better than a random tiny one."""
    return Candidate(StateSpaceModel.load(artifact_path("cartpole_goal_maml.pth")), 0.3), {"kind": "shipped"}


def test_accepted_models_are_checkpointed_archived_and_rolled_back(tmp_path):
    initial = tiny_model()
    before = weights(initial)
    agent = RecursiveSelfImprovementAgent(initial, "goal", config=RSIConfig(**{**TINY, "candidates": 1}),
                                          run_dir=tmp_path, trainer=better_trainer)
    report = agent.improve()
    assert report.accepted is not None and "accepted" in report.reason
    shipped = StateSpaceModel.load(artifact_path("cartpole_goal_maml.pth"))
    assert same(weights(agent.current_model), weights(shipped)) and agent.current.inner_lr == 0.3
    assert same(weights(StateSpaceModel.load(agent.best_checkpoint)), weights(shipped))
    saved = load_checkpoint(tmp_path / "agent.pt", kind="RSIAgent")
    assert same(saved.state_dict, weights(shipped)) and len(saved.extra["history"]) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files
    assert [e["cycle"] for e in agent.archive] == [-1, 0]
    agent.rollback(-1)
    assert same(weights(agent.current_model), before)


def test_history_round_trips_through_json(tmp_path):
    agent = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=tmp_path,
                                          trainer=adversary())
    report = agent.improve()
    again = CycleReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    on_disk = json.loads((tmp_path / "history.json").read_text())
    assert [CycleReport.from_dict(r) for r in on_disk["history"]] == agent.history


def test_a_run_killed_mid_cycle_resumes_from_its_last_checkpoint(tmp_path):
    agent = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=tmp_path,
                                          trainer=adversary())
    agent.improve()
    saved = weights(agent.current_model)

    def killed(*args):
        raise KeyboardInterrupt  # the process dies in the middle of a candidate's training

    agent.trainer = killed
    with pytest.raises(KeyboardInterrupt):
        agent.improve()
    resumed = RecursiveSelfImprovementAgent(tiny_model(seed=5), "goal", config=RSIConfig(**TINY), run_dir=tmp_path,
                                            trainer=adversary())
    assert len(resumed.history) == 1 and same(saved, weights(resumed.current_model))
    report = resumed.improve()
    assert report.cycle == 1 and len(report.candidates) == TINY["candidates"]
    stale = [t for t in resumed.study().trials() if "superseded" in t.user_attrs.get("reason", "")]
    assert stale and all(t.state.name == "FAIL" for t in stale)  # the killed cycle's trials: failed, not lost


def test_an_environment_is_not_a_task_family():
    with pytest.raises(TypeError, match="task family"):
        RecursiveSelfImprovementAgent(tiny_model(), object())


# -- Optuna workers in separate processes ----------------------------------------------------------
def _post(shared, n, **config):
    """A round of `n` trials, as a coordinator posts it (with its live session)."""
    if getattr(shared, "session", None) is None:
        shared.session = Session(shared, "r", stale=30).open(settle=0)
    cfg = RSIConfig(**{**TINY, **config})
    model = tiny_model()
    current = np.full(cfg.validation_tasks, 20.0).tolist()
    shared.post_round({"id": "r0", "cycle": 0, "seed": 1, "inner_lr": 0.1, "model": encode_model(model),
                       "current_returns": current, "config": cfg.to_dict()}, n)


def _worker(storage, *extra):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen([sys.executable, "-m", "ssm_metarl", "rsi-worker", "--storage", storage, "--study", "s",
                             "--threads", "1", *extra], env=env)


def test_two_worker_processes_share_one_journal_study_and_every_trial_lands_once(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    shared = SharedStudy(storage, "s")
    workers = [_worker(storage, "--idle-exit", "20") for _ in range(2)]
    time.sleep(6)  # both are up and polling
    _post(shared, 6, train_epochs=1, tasks_per_epoch=4, episodes=4)
    deadline = time.time() + 50
    while time.time() < deadline and sum(t.state.is_finished() for t in shared.trials("r0")) < 6:
        time.sleep(0.5)
    shared.session.close(finished=True)
    for w in workers:
        w.wait(timeout=30)
    trials = shared.trials()
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))  # no extra, none lost
    assert all(t.state.name == "COMPLETE" and t.user_attrs["round"] == "r0" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes worked


def test_a_killed_worker_leaves_its_trial_failed_and_the_study_usable(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    shared = SharedStudy(storage, "s")
    _post(shared, 1, train_epochs=10_000, tasks_per_epoch=2, max_env_steps=10**9, max_train_seconds=600)
    worker = _worker(storage)
    deadline = time.time() + 40
    while time.time() < deadline and not any("heartbeat" in t.user_attrs for t in shared.trials("r0")):
        time.sleep(0.3)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    shared.session.close()
    time.sleep(1.0)
    shared.fail_stale("r0", stale_seconds=0.5)
    (trial,) = shared.trials("r0")
    assert trial.state.name == "FAIL" and "worker lost" in trial.user_attrs["reason"]
    _post(shared, 1)  # the same study goes on
    run_trial(shared, shared.claim())
    assert [t.state.name for t in shared.trials("r0")] == ["FAIL", "COMPLETE"]


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_rsi_runs_resumes_and_ships(tmp_path, capsys):
    base = ["rsi", "--out", str(tmp_path / "run"), "--model", str(artifact_path("cartpole_goal_maml.pth")),
            "--candidates", "1", "--train_epochs", "1", "--tasks_per_epoch", "2", "--validation_tasks", "8",
            "--test_tasks", "4", "--episodes", "2", "--eval_episodes", "2", "--quiet"]
    assert main([*base, "--cycles", "1"]) == 0
    assert main([*base, "--cycles", "2", "--ship", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "best improvement" in out and "2 cycle(s)" in out
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["cycles"] == 2 and [r["cycle"] for r in card["history"]] == [0, 1]
    assert card["initial_inner_lr"] == 0.3  # read from the shipped model's card
    assert StateSpaceModel.load(tmp_path / "m.pth").state_dim >= 32
    with pytest.raises(SystemExit):
        main([*base, "--cycles", "1", "--rule", "bogus"])
