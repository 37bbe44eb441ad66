"""The run's state is one unit: a process SIGKILLed at any point of a save leaves the
last complete cycle (agent.pt, history.json and the archive agreeing), a full disk
stops the save with one line, and the run resumes either way (chapter 5)."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip("optuna")

from test_rsi_support import ENV  # noqa: E402

from ssm_metarl import StateSpaceModel, artifact_path  # noqa: E402
from ssm_metarl.cli import main  # noqa: E402
from ssm_metarl.rsi import state as state_module  # noqa: E402
from ssm_metarl.rsi.agent import RecursiveSelfImprovementAgent, RSIConfig  # noqa: E402
from ssm_metarl.rsi.search import Candidate  # noqa: E402
from ssm_metarl.rsi.state import RunStateError, load_state  # noqa: E402

TINY = dict(candidates=1, train_epochs=0, validation_tasks=8, test_tasks=4, episodes=2, eval_episodes=2)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return StateSpaceModel(8, 4, 4, 16)


def better(current, params, config, seed, heartbeat):
    """Proposes the shipped meta-trained goal model: far better than a random tiny one."""
    return Candidate(StateSpaceModel.load(artifact_path("cartpole_goal_maml.pth")), 0.3), {}


CHILD = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import torch
from ssm_metarl import StateSpaceModel, artifact_path
from ssm_metarl.rsi import state
from ssm_metarl.rsi.agent import RecursiveSelfImprovementAgent, RSIConfig
from ssm_metarl.rsi.search import Candidate

def better(current, params, config, seed, heartbeat):
    return Candidate(StateSpaceModel.load(artifact_path("cartpole_goal_maml.pth")), 0.3), {{}}

def stop(name):
    if name == {point!r}:
        os.kill(os.getpid(), signal.SIGKILL)

state._step = stop
torch.manual_seed(0)
agent = RecursiveSelfImprovementAgent(StateSpaceModel(8, 4, 4, 16), "goal", config=RSIConfig(**{tiny!r}),
                                      run_dir={run!r}, trainer=better)
agent.improve()
"""


def consistent(run_dir):
    """The state in `run_dir` agrees with itself; returns its number of cycles."""
    ckpt = load_state(run_dir)
    extra = ckpt.extra
    on_disk = json.loads((run_dir / "history.json").read_text())
    assert len(on_disk["history"]) == len(extra["history"])
    names = {os.path.basename(e["path"]) for e in extra["archive"]}
    assert names == {p.name for p in (run_dir / "archive").glob("*.pth")}
    last = StateSpaceModel.load(extra["archive"][-1]["path"])
    assert all(torch.equal(last.state_dict()[k], v) for k, v in ckpt.state_dict.items())
    return len(extra["history"])


# archive: the new model written, nothing else; history.json: the whole new state written
# but not moved; renamed: moved into states/ but not current; swapped: current
@pytest.mark.parametrize("point", ["archive", "history.json", "renamed", "swapped"])
def test_a_kill_at_any_point_of_a_save_leaves_the_last_complete_cycle(tmp_path, point):
    run = tmp_path / "run"
    first = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=run)
    first.improve()
    first.finish()
    assert consistent(run) == 1
    code = CHILD.format(repo=str(ENV["PYTHONPATH"]), point=point, tiny=TINY, run=str(run))
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-500:]  # SIGKILLed at `point`
    cycles = consistent(run)
    assert cycles == (2 if point == "swapped" else 1)  # the accepted cycle is whole, or absent
    resumed = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=run,
                                            trainer=better)
    resumed.improve()  # and the run goes on
    assert consistent(run) == cycles + 1
    assert len(list((run / "states").iterdir())) == 1  # a killed save's leftovers are gone
    resumed.finish()


def test_a_full_disk_stops_the_save_with_one_line_and_keeps_the_last_cycle(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    agent = RecursiveSelfImprovementAgent(tiny_model(), "goal", config=RSIConfig(**TINY), run_dir=run,
                                          trainer=better)
    agent.improve()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_module, "save_checkpoint", full)
    with pytest.raises(RunStateError, match="no space left on device.*keeps its last complete cycle"):
        agent.improve()
    assert consistent(run) == 1
    agent.finish()
    # the command line: one line, exit 1, and the run resumes once there is space
    base = ["rsi", "--out", str(run), "--cycles", "3", "--quiet"]
    assert main(base) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and "Traceback" not in err[0]
    monkeypatch.undo()
    assert main(base) == 0 and consistent(run) == 3


def test_a_really_full_disk_ends_the_command_in_one_line(tmp_path, capsys):
    """On a tiny file system, whatever fills it (torch's writer says only "unexpected
    pos", the journal an OSError), the command says "no space left on device"."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tiny tmpfs here (needs root)")
    try:
        code = main(["rsi", "--out", str(mount / "run"), "--cycles", "20", "--quiet", "--candidates", "1",
                     "--train_epochs", "0", "--validation_tasks", "8", "--test_tasks", "4",
                     "--episodes", "2", "--eval_episodes", "2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and "no space left on device" in err[0], err
        assert consistent(mount / "run") >= 0  # the last complete cycle is intact
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
