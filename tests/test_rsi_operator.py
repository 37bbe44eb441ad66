"""What an operator or a hostile user tries on `rsi` and `rsi-worker`, as a catalogue.

Each case names its group (the issue's groups that concern rsi) and the outcome it must
have: "error" (one line naming the problem, exit 2 before any work or exit 1 during it,
never a traceback), "handled" (the command does the right thing), "refused" (a hostile
report is refused, with its reason in the history). Never a hang, never a silent wrong
result, never data lost. Cases that need several processes and real kills run once in
tests/test_rsi_journal.py and tests/test_rsi_postgres.py; `SLOW_CASES` lists them so the
table counts them. `python tests/test_rsi_operator.py` prints the table.
"""

import copy
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("optuna")

from ssm_metarl import StateSpaceModel, artifact_path  # noqa: E402
from ssm_metarl.cli import build_parser, main  # noqa: E402
from ssm_metarl.io.checkpoint import save_checkpoint  # noqa: E402
from ssm_metarl.rsi.agent import RecursiveSelfImprovementAgent, RSIConfig  # noqa: E402
from ssm_metarl.rsi.search import suggest  # noqa: E402
from ssm_metarl.rsi.session import Session  # noqa: E402
from ssm_metarl.rsi.storage import mask  # noqa: E402
from ssm_metarl.rsi.study import SharedStudy  # noqa: E402
from ssm_metarl.rsi.verify import decode_model, encode_model  # noqa: E402
from ssm_metarl.rsi.worker import run_trial  # noqa: E402

TINY = ["--candidates", "1", "--train_epochs", "0", "--validation_tasks", "8", "--test_tasks", "4",
        "--episodes", "2", "--eval_episodes", "2", "--quiet"]
SHIPPED = artifact_path("cartpole_goal_maml.pth")
GROUPS = ["arguments", "--model", "--out/--ship", "journal", "resume", "workers", "disk full", "hostile worker"]


# -- a run to resume, made once --------------------------------------------------------
@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("made") / "run"
    assert main(["rsi", "--out", str(run), "--cycles", "1", *TINY]) == 0
    return run


@pytest.fixture
def run_copy(made_run, tmp_path):
    """A private copy of the made run (its links kept), to edit or resume."""
    target = tmp_path / "run"
    shutil.copytree(made_run, target, symlinks=True)
    (target / ".lock").unlink(missing_ok=True)
    return target


def cli(argv, capsys):
    """(exit code, the last line on stderr, stdout) of one command, never raising."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    lines = [ln for ln in out.err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in out.err, out.err
    return code, (lines[-1] if lines else ""), out.out


def checked(argv):
    """The parsed `rsi` arguments after the check phase (no work done)."""
    args = build_parser().parse_args([str(a) for a in argv])
    args.argv = list(argv)
    args.check(args)
    if getattr(args, "run_lock", None) is not None:
        args.run_lock.release()
    return args


def user_model(directory: Path, name="mine", card=None, **config):
    """A CartPole-shaped model file (and a card beside it, if `card`)."""
    torch.manual_seed(1)
    model = StateSpaceModel(**{"state_dim": 8, "input_dim": 4, "output_dim": 4, "hidden_dim": 16, **config})
    path = model.save(directory / f"{name}.pth")
    if card is not None:
        (directory / f"{name}.json").write_text(card if isinstance(card, str) else json.dumps(card))
    return path


# -- the catalogue of one-command cases ------------------------------------------------
def _sine(d):
    save_checkpoint(d / "sine.pth", kind="SineRegressor", config={"hidden_dim": 4},
                    state_dict={"w": torch.zeros(2)})
    return d / "sine.pth"


def _nan(d):
    torch.manual_seed(0)
    model = StateSpaceModel(8, 4, 4, 16)
    state = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    save_checkpoint(d / "nan.pth", kind="StateSpaceModel", config=model.config.__dict__, state_dict=state)
    return d / "nan.pth"


def _foreign_journal(d, text: bytes):
    (d / "j.log").write_bytes(text)
    return f"journal:{d / 'j.log'}"


def _symlink(d, name, target):
    os.symlink(target, d / name)
    return d / name


def _file(d, name, text="x"):
    (d / name).write_text(text)
    return d / name


# (group, case id, argv maker(tmp dir) -> argv, expected exit code, regex on the last line)
ONE_LINE = [
    ("arguments", "cycles 0", lambda d: ["rsi", "--out", d / "r", "--cycles", "0"], 2, "--cycles must be >= 1"),
    ("arguments", "workers -1", lambda d: ["rsi", "--out", d / "r", "--workers", "-1"], 2, "--workers must be >= 0"),
    ("arguments", "threads 0", lambda d: ["rsi", "--out", d / "r", "--threads", "0"], 2, "--threads must be >= 1"),
    ("arguments", "candidates 0", lambda d: ["rsi", "--out", d / "r", "--candidates", "0"], 2, "--candidates must"),
    ("arguments", "rule bogus", lambda d: ["rsi", "--out", d / "r", "--rule", "bogus"], 2, "unknown rule 'bogus'"),
    ("arguments", "confidence 1.5", lambda d: ["rsi", "--out", d / "r", "--confidence", "1.5"], 2, "--confidence must"),
    ("arguments", "margin nan", lambda d: ["rsi", "--out", d / "r", "--margin", "nan"], 2, "--margin must be a finite"),
    ("arguments", "family bogus", lambda d: ["rsi", "--out", d / "r", "--family", "bogus"], 2, "unknown task family"),
    ("arguments", "seed -1", lambda d: ["rsi", "--out", d / "r", "--seed", "-1"], 2, "--seed must"),
    ("arguments", "stale_seconds 0", lambda d: ["rsi", "--out", d / "r", "--stale_seconds", "0"], 2, "--stale_seconds must"),
    ("arguments", "max_env_steps 0", lambda d: ["rsi", "--out", d / "r", "--max_env_steps", "0"], 2, "--max_env_steps must"),
    ("arguments", "inner_lr 0", lambda d: ["rsi", "--out", d / "r", "--inner_lr", "0"], 2, "--inner_lr must be a positive"),
    ("arguments", "inner_lr nan", lambda d: ["rsi", "--out", d / "r", "--inner_lr", "nan"], 2, "--inner_lr must be a positive"),
    ("arguments", "study empty", lambda d: ["rsi", "--out", d / "r", "--study", ""], 2, "--study must be a name"),
    ("arguments", "study newline", lambda d: ["rsi", "--out", d / "r", "--study", "a\nb"], 2, "unprintable"),
    ("arguments", "storage empty", lambda d: ["rsi", "--out", d / "r", "--storage", ""], 2, "--storage must be a URL"),
    ("arguments", "storage unknown kind", lambda d: ["rsi", "--out", d / "r", "--storage", "bogus://x/y"], 2, "unknown kind"),
    ("arguments", "sqlite in memory", lambda d: ["rsi", "--out", d / "r", "--storage", "sqlite://"], 2, "needs a file"),
    ("arguments", "sqlite for workers", lambda d: ["rsi", "--out", d / "r", "--storage", f"sqlite:///{d}/s.db",
                                                   "--workers", "2"], 2, "sqlite serves one process only"),
    ("arguments", "password in the URL", lambda d: ["rsi", "--out", d / "r", "--storage",
                                                    "postgresql://u:hunter2@db/x"], 2, "holds a password"),
    ("arguments", "MySQL without its driver", lambda d: ["rsi", "--out", d / "r", "--storage", "mysql://u@db/x"], 2,
     "needs the mysqldb driver.*pip install"),
    ("arguments", "worker threads 0", lambda d: ["rsi-worker", "--storage", "journal:x.log", "--study", "s",
                                                 "--threads", "0"], 2, "--threads must be a positive"),
    ("arguments", "worker idle-exit -1", lambda d: ["rsi-worker", "--storage", "journal:x.log", "--study", "s",
                                                    "--idle-exit", "-1"], 2, "--idle-exit must"),
    ("arguments", "worker max-trials 0", lambda d: ["rsi-worker", "--storage", "journal:x.log", "--study", "s",
                                                    "--max-trials", "0"], 2, "--max-trials must"),
    ("arguments", "worker timeout nan", lambda d: ["rsi-worker", "--storage", "journal:x.log", "--study", "s",
                                                   "--coordinator-timeout", "nan"], 2, "--coordinator-timeout must"),
    ("arguments", "worker on SQLite", lambda d: ["rsi-worker", "--storage", f"sqlite:///{d}/s.db", "--study", "s"], 2,
     "sqlite serves one process only"),
    ("arguments", "worker on a missing journal", lambda d: ["rsi-worker", "--storage", f"journal:{d}/none.log",
                                                            "--study", "s"], 2, "no journal at .*start the coordinator"),
    ("arguments", "worker with a password", lambda d: ["rsi-worker", "--storage", "postgresql://u:pw@db/x",
                                                       "--study", "s"], 2, "holds a password"),
    ("arguments", "worker study empty", lambda d: ["rsi-worker", "--storage", "journal:x.log", "--study", ""], 2,
     "--study must be a name"),
    ("--model", "missing file", lambda d: ["rsi", "--out", d / "r", "--model", d / "none.pth"], 2, "no such file"),
    ("--model", "a directory", lambda d: ["rsi", "--out", d / "r", "--model", d], 2, "is a directory"),
    ("--model", "dangling link", lambda d: ["rsi", "--out", d / "r", "--model", _symlink(d, "l.pth", d / "gone")], 2,
     "dangling symbolic link"),
    ("--model", "text posing as .pth", lambda d: ["rsi", "--out", d / "r", "--model", _file(d, "t.pth")], 2,
     r"t\.pth: "),
    ("--model", "a sine model", lambda d: ["rsi", "--out", d / "r", "--model", _sine(d)], 2, "SineRegressor"),
    ("--model", "NaN weights", lambda d: ["rsi", "--out", d / "r", "--model", _nan(d)], 2, "NaN/inf"),
    ("--model", "no card beside it", lambda d: ["rsi", "--out", d / "r", "--model", user_model(d)], 2,
     "has no card mine.json beside it.*--inner_lr"),
    ("--model", "a shipped name in another folder", lambda d: ["rsi", "--out", d / "r", "--model",
                                                               user_model(d, "cartpole_goal_maml")], 2,
     "no card cartpole_goal_maml.json beside it"),
    ("--model", "card not JSON", lambda d: ["rsi", "--out", d / "r", "--model", user_model(d, card="{oops")], 2,
     "not a JSON (card|object)"),
    ("--model", "card without a step size", lambda d: ["rsi", "--out", d / "r", "--model", user_model(d, card={})], 2,
     "has no adaptation_lr"),
    ("--model", "unknown shipped name", lambda d: ["rsi", "--out", d / "r", "--model", "no_such_model"], 2,
     "no such shipped model"),
    ("--model", "wrong inputs", lambda d: ["rsi", "--out", d / "r", "--model", user_model(d, card={"adaptation_lr": .1},
                                                                                            input_dim=5)], 2,
     "reads 5 inputs"),
    ("--model", "card of other weights", lambda d: ["rsi", "--out", d / "r", "--model", user_model(
        d, card={"adaptation_lr": 0.1, "weights_sha256": "0" * 64})], 2, "describes other weights"),
    ("--out/--ship", "out is a file", lambda d: ["rsi", "--out", _file(d, "f")], 2, "is a file, not a directory"),
    ("--out/--ship", "out dangling link", lambda d: ["rsi", "--out", _symlink(d, "o", d / "gone")], 2,
     "does not exist"),
    ("--out/--ship", "out a foreign folder", lambda d: ["rsi", "--out", _file(d, "notes.txt").parent], 2,
     "holds files but no rsi run"),
    ("--out/--ship", "out below a file", lambda d: ["rsi", "--out", _file(d, "f") / "sub"], 2, "not a directory"),
    ("--out/--ship", "ship a directory", lambda d: ["rsi", "--out", d / "r", "--ship", _dir(d, "s.pth").with_suffix("")],
     2, "is a directory"),
    ("--out/--ship", "ship a link", lambda d: ["rsi", "--out", d / "r", "--ship",
                                                _symlink(d, "s.pth", _file(d, "t")).with_suffix("")], 2,
     "symbolic link"),
    ("--out/--ship", "ship over the starting model", lambda d: ["rsi", "--out", d / "r", "--inner_lr", "0.1",
                                                                 "--model", user_model(d),
                                                                 "--ship", d / "mine"], 2,
     "would overwrite the starting model"),
    ("--out/--ship", "ship its card a directory", lambda d: ["rsi", "--out", d / "r", "--ship",
                                                              _dir(d, "c.json").with_suffix("")], 2, "is a directory"),
    ("journal", "foreign bytes", lambda d: ["rsi-worker", "--storage", _foreign_journal(d, b"\x00\x01garbage\n"),
                                            "--study", "s"], 2, "is not an Optuna journal"),
    ("journal", "JSON, not a journal", lambda d: ["rsi-worker", "--storage", _foreign_journal(d, b'{"a": 1}\n'),
                                                  "--study", "s"], 2, "is not an Optuna journal"),
    ("journal", "a record cut short", lambda d: ["rsi-worker", "--storage",
                                                 _foreign_journal(d, b'{"op_code": 0, "worker_id": "w"}\n{"op_co'),
                                                 "--study", "s"], 2, r"damaged: line 2 of 2 is cut short.*sed -i"),
    ("journal", "a garbage line inside", lambda d: ["rsi-worker", "--storage",
                                                    _foreign_journal(d, b'{"op_code": 0}\nxx\n{"op_code": 0}\n'),
                                                    "--study", "s"], 2, "line 2 of 3 is not a journal record"),
    ("journal", "a directory", lambda d: ["rsi-worker", "--storage", f"journal:{_dir(d, 'j.log')}", "--study", "s"],
     2, "is not a file"),
    ("journal", "an operation Optuna does not know", lambda d: [
        "rsi-worker", "--storage", _foreign_journal(d, b'{"op_code": 999, "worker_id": "w"}\n'), "--study", "s"],
     1, "holds records Optuna cannot replay"),
    ("journal", "a record missing its fields", lambda d: [
        "rsi-worker", "--storage", _foreign_journal(d, b'{"op_code": 0}\n'), "--study", "s"], 1,
     "holds records Optuna cannot replay"),
    ("journal", "rsi on a journal no one can replay", lambda d: [
        "rsi", "--out", d / "r", "--storage", _foreign_journal(d, b'{"op_code": 0}\n')], 2,
     "holds records Optuna cannot replay"),
    ("arguments", "a database host that does not exist", lambda d: [
        "rsi", "--out", d / "r", "--storage", "postgresql://rsi@no-such-host.invalid/x"], 2, "failed to resolve host"),
    ("--model", "an empty name", lambda d: ["rsi", "--out", d / "r", "--model", ""], 2, "--model must name"),
    ("--out/--ship", "ship an empty name", lambda d: ["rsi", "--out", d / "r", "--ship", ""], 2, "--ship must name"),
    ("arguments", "a journal in a missing folder", lambda d: ["rsi", "--out", d / "r", "--storage",
                                                               f"journal:{d}/no/such/s.log"], 2, "does not exist"),
    ("arguments", "a journal that is a folder", lambda d: ["rsi", "--out", d / "r", "--storage", f"journal:{d}"], 2,
     "is a directory"),
]


def _dir(d, name):
    (d / name).mkdir()
    return d / name


@pytest.mark.parametrize("group,name,argv,code,pattern", ONE_LINE, ids=[f"{g}: {n}" for g, n, *_ in ONE_LINE])
def test_one_line_errors(group, name, argv, code, pattern, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, line, _ = cli(argv(tmp_path), capsys)
    assert got == code and __import__("re").search(pattern, line), (got, line)


# -- cases that need a run, a study or a process ---------------------------------------
CASES = []  # (group, name, outcome) of the tests below


def case(group, name, outcome):
    CASES.append((group, name, outcome))
    return lambda f: f


@case("--model", "a user's card gives the step size", "handled")
@case("--model", "--inner_lr overrides the card", "handled")
def test_a_users_model_reads_its_own_card(tmp_path):
    path = user_model(tmp_path, card={"adaptation_lr": 0.123})
    assert checked(["rsi", "--out", tmp_path / "r", "--model", path]).start_lr == 0.123
    assert checked(["rsi", "--out", tmp_path / "r2", "--model", path, "--inner_lr", "0.5"]).start_lr == 0.5
    assert checked(["rsi", "--out", tmp_path / "r3"]).start_lr == 0.3  # the shipped card's


@case("--out/--ship", "out a link to a directory", "handled")
@case("--out/--ship", "ship into a folder to be made", "handled")
def test_paths_that_are_fine(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    checked(["rsi", "--out", tmp_path / "link", "--ship", tmp_path / "new" / "dir" / "m"])


RESUME_FLAGS = [("--family", "goal_sharp"), ("--seed", "1"), ("--validation_tasks", "12"), ("--rule", "naive"),
                ("--candidates", "2"), ("--train_epochs", "2"), ("--margin", "1.5"), ("--confidence", "0.9"),
                ("--episodes", "3"), ("--test_tasks", "8"), ("--max_train_seconds", "12.5"), ("--inner_lr", "0.5"),
                ("--study", "other")]
for _flag, _ in RESUME_FLAGS:
    CASES.append(("resume", f"changed {_flag}", "error"))
CASES += [("resume", "changed --model", "error"), ("resume", "changed --storage", "error")]


@pytest.mark.parametrize("flag,value", RESUME_FLAGS)
def test_a_resume_with_a_changed_flag_is_refused_naming_it(flag, value, run_copy, capsys):
    code, line, _ = cli(["rsi", "--out", run_copy, "--cycles", "2", flag, value], capsys)
    assert code == 2 and line.split("error: ")[1].startswith(f"{flag} {value} differs from the run"), line


def test_a_resume_with_another_model_or_storage_is_refused(run_copy, tmp_path, capsys):
    other = user_model(tmp_path, card={"adaptation_lr": 0.3})
    code, line, _ = cli(["rsi", "--out", run_copy, "--model", other], capsys)
    assert code == 2 and "--model another model differs" in line and "cartpole_goal_maml" in line
    code, line, _ = cli(["rsi", "--out", run_copy, "--storage", f"journal:{tmp_path / 'x.log'}"], capsys)
    assert code == 2 and "--storage journal:" in line and "differs" in line


@case("resume", "no flags: the run's own", "handled")
@case("resume", "changed --stale_seconds (operational)", "handled")
@case("resume", "history.json edited (agent.pt rules)", "handled")
def test_resumes_that_work(run_copy, capsys):
    (run_copy / "current" / "history.json").write_text("{edited}")
    code, _, out = cli(["rsi", "--out", run_copy, "--cycles", "2", "--stale_seconds", "5", "--quiet"], capsys)
    saved = json.loads((run_copy / "history.json").read_text())
    assert code == 0 and [r["cycle"] for r in saved["history"]] == [0, 1]
    assert saved["config"]["validation_tasks"] == 8  # the run's, not the default 32


@case("resume", "agent.pt truncated", "error")
@case("resume", "current link removed", "error")
@case("resume", "current points nowhere", "error")
@case("resume", "a run from an older version", "error")
def test_a_damaged_run_directory_gets_one_line(run_copy, tmp_path, capsys):
    agent_pt = (run_copy / "current").resolve() / "agent.pt"
    data = agent_pt.read_bytes()
    agent_pt.write_bytes(data[: len(data) // 2])
    code, line, _ = cli(["rsi", "--out", run_copy], capsys)
    assert code == 2 and "agent.pt" in line and "--no-resume" in line, line
    agent_pt.write_bytes(data)
    target = os.readlink(run_copy / "current")
    (run_copy / "current").unlink()
    code, line, _ = cli(["rsi", "--out", run_copy], capsys)
    assert code == 2 and "current link is missing" in line and f"ln -s {target}" in line, line
    os.symlink("states/999999", run_copy / "current")
    code, line, _ = cli(["rsi", "--out", run_copy], capsys)
    assert code == 2 and "holds no agent.pt" in line, line
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(SHIPPED, old / "agent.pt")
    code, line, _ = cli(["rsi", "--out", old], capsys)
    assert code == 2 and "older version" in line, line


@case("resume", "--no-resume over a run", "handled")
@case("resume", "a halted run resumed", "handled")
def test_afresh_and_halted(run_copy, capsys):
    code, _, _ = cli(["rsi", "--out", run_copy, "--cycles", "1", "--no-resume", *TINY], capsys)
    assert code == 0 and len(json.loads((run_copy / "history.json").read_text())["history"]) == 1
    agent = RecursiveSelfImprovementAgent(None, "goal", run_dir=run_copy)
    agent.halted = "performance floor: test"
    agent.save()
    agent.finish()
    code, _, out = cli(["rsi", "--out", run_copy, "--cycles", "3"], capsys)
    assert code == 0 and "halted by the safety monitor: performance floor: test" in out


@case("journal", "the run's journal truncated", "error")
@case("journal", "the run's journal deleted", "handled")
@case("journal", "the run's journal emptied", "handled")
def test_the_runs_own_journal(run_copy, capsys):
    log = run_copy / "study.log"
    data = log.read_bytes()
    log.write_bytes(data[:-20])
    code, line, _ = cli(["rsi", "--out", run_copy, "--cycles", "2"], capsys)
    assert code == 2 and "is damaged" in line and "cut short" in line and "sed -i" in line, line
    log.unlink()
    code, _, _ = cli(["rsi", "--out", run_copy, "--cycles", "2", "--quiet"], capsys)
    assert code == 0  # the study is made again; the run's state is in agent.pt
    log.write_bytes(b"")
    assert cli(["rsi", "--out", run_copy, "--cycles", "3", "--quiet"], capsys)[0] == 0


def _study_with(tmp_path, make):
    import optuna

    storage = f"journal:{tmp_path / 'shared.log'}"
    from ssm_metarl.rsi.storage import make_storage, parse_storage

    make(optuna, make_storage(parse_storage(storage)))
    return storage


@case("journal", "a minimizing study", "error")
@case("journal", "a study of several objectives", "error")
@case("journal", "a study of another search space", "error")
@case("journal", "a study of another run", "error")
@case("journal", "another study in the same journal", "handled")
def test_foreign_studies_are_refused(tmp_path, capsys):
    def minimize(optuna, storage):
        optuna.create_study(storage=storage, study_name="rsi", direction="minimize")

    def several(optuna, storage):
        optuna.create_study(storage=storage, study_name="rsi", directions=["maximize", "maximize"])

    def space(optuna, storage):
        s = optuna.create_study(storage=storage, study_name="rsi", direction="maximize")
        s.enqueue_trial({"grow_hidden": 4})
        s.optimize(lambda t: t.suggest_categorical("grow_hidden", [0, 4]), n_trials=1)

    def taken(optuna, storage):
        s = optuna.create_study(storage=storage, study_name="rsi", direction="maximize")
        s.set_user_attr("run", "someone-else")

    for make, pattern in ((minimize, "not this loop's"), (several, "not this loop's"),
                          (space, "another search space"), (taken, "holds another run")):
        d = tmp_path / make.__name__
        d.mkdir()
        storage = _study_with(d, make)
        code, line, _ = cli(["rsi", "--out", d / "r", "--storage", storage, *TINY], capsys)
        assert code == 2 and pattern in line, line
    d = tmp_path / "other"
    d.mkdir()
    storage = _study_with(d, lambda optuna, s: optuna.create_study(storage=s, study_name="theirs"))
    assert checked(["rsi", "--out", d / "r", "--storage", storage]).resuming is False


@case("workers", "two agents of one process on one run", "handled")
@case("workers", "a live coordinator of another host holds the study", "error")
@case("workers", "a dead coordinator of this host is taken over", "handled")
@case("workers", "a finished run's study is reused by its resume", "handled")
def test_who_may_coordinate(run_copy, tmp_path, capsys):
    a = RecursiveSelfImprovementAgent(None, run_dir=run_copy)
    b = RecursiveSelfImprovementAgent(None, run_dir=run_copy)  # same process: shares the lock
    a.finish(), b.finish()
    storage = f"journal:{run_copy / 'study.log'}"
    shared = SharedStudy(storage, "rsi")
    shared.post("coordinator", {"run": "other", "session": "x", "process": "elsewhere:1",
                                "beat": time.time(), "finished": False})
    code, line, _ = cli(["rsi", "--out", run_copy, "--cycles", "2"], capsys)
    assert code == 2 and "in use by a live coordinator (elsewhere:1" in line, line
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    shared.post("coordinator", {"run": "other", "session": "x", "process": f"{os.uname().nodename}:"
                                f"{dead.stdout.strip()}", "beat": time.time(), "finished": False})
    assert cli(["rsi", "--out", run_copy, "--cycles", "2", "--quiet"], capsys)[0] == 0
    assert cli(["rsi", "--out", run_copy, "--cycles", "3", "--quiet"], capsys)[0] == 0


@case("workers", "a worker with no coordinator stops", "handled")
@case("workers", "a worker on a study that never comes", "error")
def test_a_worker_alone(tmp_path, capsys):
    storage = f"journal:{tmp_path / 'study.log'}"
    SharedStudy(storage, "s")  # a study nobody coordinates
    code, line, _ = cli(["rsi-worker", "--storage", storage, "--study", "s", "--coordinator-timeout", "1"], capsys)
    assert code == 0 and "no live coordinator for 1 s; ran 0 trial(s)" in line
    code, line, _ = cli(["rsi-worker", "--storage", storage, "--study", "typo", "--coordinator-timeout", "1"], capsys)
    assert code == 1 and "no study 'typo'" in line and "check --study" in line


def _round(shared, **config):
    shared.session = Session(shared, "test", stale=30).open(settle=0)
    cfg = RSIConfig(candidates=1, train_epochs=0, validation_tasks=8, test_tasks=4, episodes=2, eval_episodes=2,
                    **config)
    torch.manual_seed(0)
    info = {"id": "r0", "cycle": 0, "seed": 1, "inner_lr": 0.1, "model": encode_model(StateSpaceModel(8, 4, 4, 16)),
            "current_returns": [20.0] * 4, "config": cfg.to_dict()}
    shared.post_round(info, 1)
    return info


@case("workers", "a round it cannot read", "handled")
@case("workers", "a trial of a superseded round", "handled")
@case("workers", "a coordinator whose study is taken over", "error")
def test_a_worker_never_dies_of_a_bad_round(tmp_path):
    shared = SharedStudy(f"journal:{tmp_path / 'study.log'}", "s")
    info = _round(shared)
    shared.post("round", {**info, "config": {"no_such_setting": 1}})
    assert run_trial(shared, shared.claim("r0")) == "failed"
    assert "the round is unreadable" in shared.trials("r0")[0].user_attrs["reason"]
    shared.enqueue("old-round")
    assert run_trial(shared, shared.claim("old-round")) == "superseded"
    shared.post("coordinator", {"session": "someone else", "beat": time.time()})
    shared.session._tick()
    with pytest.raises(Exception, match="stopped: .* in use by another coordinator"):
        shared.session.check()


@case("disk full", "the journal's disk fills", "error")
@case("disk full", "--ship's disk fills", "error")
def test_a_full_disk_elsewhere_is_one_line(run_copy, tmp_path, capsys, monkeypatch):
    import optuna.storages.journal._file as journal_file

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(journal_file.JournalFileBackend, "append_logs", full)
        code, line, _ = cli(["rsi", "--out", run_copy, "--cycles", "2"], capsys)
    assert code == 1 and "no space left on device" in line.lower(), line
    with monkeypatch.context() as m:
        m.setattr(StateSpaceModel, "save", full)
        code, line, _ = cli(["rsi", "--out", run_copy, "--cycles", "1", "--ship", tmp_path / "m"], capsys)
    assert code == 1 and "--ship" in line and "no space left on device" in line.lower(), line


@case("arguments", "SQLite for one process", "handled")
@case("arguments", "passwords masked in every message", "handled")
def test_sqlite_alone_and_masked_urls(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = cli(["rsi", "--out", "r", "--storage", "sqlite:///s.db", "--cycles", "1", *TINY], capsys)
    assert code == 0 and json.loads(Path("r/history.json").read_text())["storage"].startswith("sqlite:///")
    assert mask("postgresql://u:hunter2@h/d and mysql://a:b@c/d") == "postgresql://u:***@h/d and mysql://a:***@c/d"


# -- hostile workers ---------------------------------------------------------------------
def hostile(kind, info, model):
    """What a hostile worker reports for `kind`: (returns, model dict, inner_lr)."""
    n = info["config"]["validation_tasks"]
    weights = copy.deepcopy(model)
    with torch.no_grad():
        for p in weights.parameters():
            p.fill_({"nan": float("nan"), "zeros": 0.0}.get(kind, 0.0))
    encoded = encode_model(weights if kind in ("nan", "zeros") else model)
    if kind == "garbage":
        encoded = {"config": encoded["config"], "state": "bm90IGEgbW9kZWw="}
    if kind == "shape":
        encoded = encode_model(StateSpaceModel(8, 5, 4, 16))
    returns = [500.0] * (n - 1 if kind == "count" else n)
    return returns, encoded, (1e9 if kind == "lr" else info["inner_lr"])


KINDS = [("nan", "non-finite weights"), ("zeros", "the coordinator measured"), ("count", "reported 7 returns"),
         ("garbage", "weights unreadable"), ("shape", "wrong-shaped model"), ("lr", "outside the search space")]
for _kind, _ in KINDS:
    CASES.append(("hostile worker", f"reports 500 with {_kind}", "refused"))


def run_hostile_worker(storage, kinds, stop):
    shared = SharedStudy(storage, "rsi", create=False, wait=30)
    todo = list(kinds)
    while not stop.is_set():
        shared.post("worker:hostile:1", {"beat": time.time()})
        info = shared.attrs().get("round")
        trial = shared.claim(info["id"]) if info and todo else None
        if trial is None:
            time.sleep(0.05)
            continue
        params = suggest(trial)
        current = decode_model(info["model"])
        model = current.widened(current.state_dim + params["grow_state"], current.hidden_dim + params["grow_hidden"])
        returns, encoded, lr = hostile(todo.pop(0), {**info, "inner_lr": params["inner_lr"]}, model)
        for key, value in {"returns": returns, "model": encoded, "inner_lr": lr, "worker": "hostile:1"}.items():
            trial.set_user_attr(key, value)
        shared.study.tell(trial, 480.0)


@pytest.mark.parametrize("kinds", [KINDS[:3], KINDS[3:]], ids=["nan-zeros-count", "garbage-shape-lr"])
def test_hostile_reports_are_refused_with_their_reason(kinds, tmp_path):
    torch.manual_seed(0)
    model = StateSpaceModel(8, 4, 4, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = RSIConfig(candidates=3, train_epochs=0, validation_tasks=8, test_tasks=4, episodes=2, eval_episodes=2)
    agent = RecursiveSelfImprovementAgent(model, "goal", config=config, run_dir=tmp_path / "run", inline=False)
    stop = threading.Event()
    agent.study()  # the study exists before the hostile worker looks for it
    thread = threading.Thread(target=run_hostile_worker, args=(agent.where.url, [k for k, _ in kinds], stop))
    thread.start()
    try:
        report = agent.improve(timeout=60)
    finally:
        stop.set()
        thread.join(timeout=10)
        agent.finish()
    assert report.accepted is None
    reasons = " | ".join(c["reason"] for c in report.candidates)
    for _, why in kinds:
        assert why in reasons, reasons
    assert all(torch.equal(before[k], v) for k, v in agent.current_model.state_dict().items())


# -- what the multi-process tests cover (run once, there) ----------------------------------
SLOW_CASES = [
    ("workers", "the only worker SIGKILLed mid-trial", "handled", "test_rsi_journal"),
    ("workers", "a worker SIGKILLed mid-trial, 3 workers on PostgreSQL", "handled", "test_rsi_postgres"),
    ("workers", "the coordinator SIGKILLed: its workers stop", "handled", "test_rsi_journal"),
    ("workers", "the coordinator SIGKILLed and resumed: workers rejoin", "handled", "test_rsi_postgres"),
    ("workers", "Ctrl-C on a worker: its trial given back", "handled", "test_rsi_journal"),
    ("workers", "SIGTERM on the coordinator: one line, its workers stop", "handled", "test_rsi_journal"),
    ("workers", "a trial failed under its worker", "handled", "test_rsi_journal"),
    ("workers", "no heartbeat while scoring", "handled", "test_rsi_journal"),
    ("workers", "two coordinators on one --out", "error", "test_rsi_journal"),
    ("workers", "two coordinators on one study", "error", "test_rsi_journal"),
    ("workers", "the database restarted mid-run", "handled", "test_rsi_postgres"),
    ("workers", "3 workers creating the schema at once", "handled", "test_rsi_postgres"),
    ("workers", "each trial exactly once (PostgreSQL)", "handled", "test_rsi_postgres"),
    ("journal", "a relative --out: no lock spin", "handled", "test_rsi_journal"),
    ("journal", "a lock holder killed", "handled", "test_rsi_journal"),
    ("resume", "a second run on one --out (resumed, afresh)", "handled", "test_rsi_journal"),
    ("resume", "a kill at 4 points of a save", "handled", "test_rsi_state"),
    ("disk full", "ENOSPC while saving the state", "error", "test_rsi_state"),
    ("disk full", "a real 200 KB file system fills", "error", "test_rsi_state"),
    ("arguments", "no password in files, cards or ps lines", "handled", "test_rsi_postgres"),
]


def table() -> str:
    """The catalogue: group x tried x outcome."""
    rows = [(g, o) for g, _, _, _, _ in ONE_LINE for o in ["error"]] + [(g, o) for g, _, o in CASES]
    rows += [(g, o) for g, _, o, _ in SLOW_CASES]
    count = Counter(rows)
    lines = ["| group | tried | error (one line) | handled | refused | traceback | silent wrong | hang |",
             "|---|---|---|---|---|---|---|---|"]
    for g in GROUPS:
        tried = sum(n for (group, _), n in count.items() if group == g)
        lines.append(f"| {g} | {tried} | {count[(g, 'error')]} | {count[(g, 'handled')]} | "
                     f"{count[(g, 'refused')]} | 0 | 0 | 0 |")
    lines.append(f"| **total** | **{len(rows)}** | {sum(n for (g, o), n in count.items() if o == 'error')} | "
                 f"{sum(n for (g, o), n in count.items() if o == 'handled')} | "
                 f"{sum(n for (g, o), n in count.items() if o == 'refused')} | 0 | 0 | 0 |")
    return "\n".join(lines)


def test_the_catalogue_is_big_enough():
    assert len(ONE_LINE) + len(CASES) + len(SLOW_CASES) >= 60
    assert {g for g, *_ in ONE_LINE} | {g for g, *_ in CASES} | {g for g, *_ in SLOW_CASES} == set(GROUPS)


if __name__ == "__main__":
    print(table())
