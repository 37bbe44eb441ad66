"""`python -m ssm_metarl train` (chapter 3): the model card's flags, the written model and card,
resuming, and the shipped meta-trained artifacts matching their cards."""
import json
import shutil

import pytest
import torch

from ssm_metarl import StateSpaceModel, artifact_path, load_checkpoint
from ssm_metarl.cli import build_parser, main



CARD_FLAGS = ["--epochs", "3", "--tasks_per_epoch", "2", "--state_dim", "8", "--hidden_dim", "16",
              "--inner_lr", "0.05", "--outer_lr", "0.002", "--adaptation_steps", "1", "--mode", "maml"]


def test_train_parser_accepts_the_model_cards_flags():
    args = build_parser().parse_args(["train", *CARD_FLAGS, "--family", "goal", "--seed", "3", "--out", "m.pth"])
    assert (args.epochs, args.tasks_per_epoch, args.state_dim, args.hidden_dim) == (3, 2, 8, 16)
    assert (args.inner_lr, args.outer_lr, args.adaptation_steps, args.mode) == (0.05, 0.002, 1, "maml")
    assert (args.family, args.seed, args.out) == ("goal", 3, "m.pth")
    with pytest.raises(SystemExit):  # the card's --mode hybrid is an adaptation mode (chapter 4), not a trainer
        build_parser().parse_args(["train", "--mode", "hybrid", "--out", "m.pth"])


def _argv(out, epochs=3):
    argv = ["train", *CARD_FLAGS, "--family", "goal", "--episodes", "2", "--eval_every", "2", "--test_tasks", "2",
            "--seed", "1", "--quiet", "--keep-resume", "--out", str(out)]
    argv[argv.index("--epochs") + 1] = str(epochs)
    return argv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests below (training is the slow part)."""
    out = tmp_path_factory.mktemp("train") / "tiny.pth"
    assert main(_argv(out)) == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_train_writes_a_loadable_model_and_a_card_with_command_log_and_evaluation(trained):
    out, card = trained
    model = StateSpaceModel.load(out)
    assert (model.state_dim, model.hidden_dim) == (8, 16)
    assert card["command"].startswith("python -m ssm_metarl train --epochs 3")
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["train_config"]["inner_lr"] == 0.05 and card["train_config"]["mode"] == "maml"
    assert len(card["log"]["pre_return"]) == len(card["log"]["post_return"]) == 3
    assert card["validation"]["epoch"] == [1, 2] and card["best_epoch"] in (1, 2)
    assert set(card["evaluation"]["estimates"]) >= {"0", "1"} and card["wall_seconds"] > 0
    assert card["adaptation_lr"] == 0.05 and not card["stopped_early"]


def test_train_resumes_from_its_resume_checkpoint(trained, tmp_path):
    out, first = trained
    state = load_checkpoint(out.with_suffix(".resume.pth"), kind="MetaTrainState")
    assert state.extra["next_epoch"] == 3
    # Asking for more epochs extends the run from where it stopped instead of starting again.
    moved = tmp_path / out.name
    shutil.copy(out.with_suffix(".resume.pth"), moved.with_suffix(".resume.pth"))
    argv = _argv(moved, epochs=4)
    argv.remove("--keep-resume")
    assert main(argv) == 0
    second = json.loads(moved.with_suffix(".json").read_text())
    assert second["log"]["pre_return"][:3] == first["log"]["pre_return"]
    assert len(second["log"]["epoch"]) == 4
    assert not moved.with_suffix(".resume.pth").exists()  # a finished run leaves no resume state behind


def _usage_error(argv, capsys) -> str:
    """Run the CLI on a bad command line: argparse's exit 2 and a one-line error (no traceback)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_train_rejects_an_out_path_without_pth(tmp_path, capsys):
    assert "--out must end in .pth" in _usage_error(["train", "--out", str(tmp_path / "model.pt")], capsys)


SHIPPED = {"cartpole_goal_maml": "goal", "cartpole_goal_multitask": "goal",
           "cartpole_flip_maml": "flip", "cartpole_flip_multitask": "flip"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_policy_loads_and_matches_its_card(name):
    path = artifact_path(f"{name}.pth")
    card = json.loads(artifact_path(f"{name}.json").read_text())
    model = StateSpaceModel.load(path)
    checkpoint = load_checkpoint(path)
    assert card["model_config"] == checkpoint.config
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["command"].startswith("python -m ssm_metarl") and " train " in card["command"]
    assert f"--out models/{name}.pth" in card["command"]
    assert card["train_config"]["family"] == SHIPPED[name]
    assert checkpoint.extra["meta_train"]["best_epoch"] == card["best_epoch"] in card["validation"]["epoch"]
    assert len(card["log"]["epoch"]) == card["epochs_run"] and card["wall_seconds"] <= 600
    est = card["evaluation"]["estimates"]
    assert est["0"]["low"] <= est["0"]["mean"] <= est["0"]["high"] and est["0"]["n"] >= 40
    if name == "cartpole_goal_maml":  # the model card's configuration, meta-trained with MAML
        assert (model.state_dim, model.input_dim, model.output_dim, model.hidden_dim) == (32, 4, 4, 64)
        assert card["parameters"] == 6744 and card["train_config"]["mode"] == "maml"


@pytest.mark.parametrize("method", ["maml", "fomaml", "multitask"])
def test_shipped_sine_models_reproduce_their_cards(method):
    from ssm_metarl.meta import sine

    card = json.loads(artifact_path(f"sine_{method}.json").read_text())
    model = sine.load_sine_model(artifact_path(f"sine_{method}.pth"))
    assert card["method"] == method and f"--mode {method}" in card["command"]
    n = card["evaluation"]["mse"]["0"]["n"]
    amplitude, phase = sine.SineTasks(sine.SINE_TEST_SEED).sample(n)
    errors, _ = sine.sine_errors(model, amplitude, phase, steps=(0,), seed=sine.SINE_TEST_SEED + 1)
    assert errors[0].mean().item() == pytest.approx(card["evaluation"]["mse"]["0"]["mean"], rel=1e-5)


def test_shipped_maml_policy_reproduces_its_cards_unadapted_returns():
    """Re-measure the card's 'before adaptation' column: same tasks, same seeds, same numbers."""
    from ssm_metarl.meta.evaluation import TEST_SEED, held_out_tasks
    from ssm_metarl.cartpole.rollout import collect
    from ssm_metarl.cartpole.tasks import get_family

    card = json.loads(artifact_path("cartpole_goal_maml.json").read_text())
    model = StateSpaceModel.load(artifact_path("cartpole_goal_maml.pth"))
    tasks = held_out_tasks(get_family("goal"), card["evaluation"]["estimates"]["0"]["n"])
    per_task = card["evaluation"]["eval_episodes"]
    with torch.no_grad():
        returns = collect(model, tasks, per_task, seed=TEST_SEED + 1).returns.reshape(len(tasks), per_task).mean(1)
    assert returns.mean().item() == pytest.approx(card["evaluation"]["estimates"]["0"]["mean"], abs=0.5)


def test_train_flags_come_from_the_config_dataclasses():
    from dataclasses import fields

    from ssm_metarl.meta.maml_rl import MetaRLConfig
    from ssm_metarl.meta.sine import SineConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest for a in train._actions}
    assert {f.name for f in fields(MetaRLConfig)} | {f.name for f in fields(SineConfig)} <= flags
    args = build_parser().parse_args(["train", "--out", "m.pth"])
    assert not hasattr(args, "epochs") and not hasattr(args, "inner_lr")  # defaults live in the dataclasses
    assert "(default: 300)" in train.format_help().replace("\n", " ").replace("  ", " ")


@pytest.mark.parametrize("family, flag, value", [("sine", "--epochs", "5"), ("sine", "--tasks_per_epoch", "3"),
                                                 ("sine", "--state_dim", "8"), ("goal", "--iterations", "5"),
                                                 ("flip", "--meta_batch", "3")])
def test_each_family_rejects_the_other_familys_flags(tmp_path, family, flag, value, capsys):
    message = _usage_error(["train", "--family", family, flag, value, "--out", str(tmp_path / "m.pth")], capsys)
    assert f"{flag} do(es) not apply to --family {family}" in message
    assert not (tmp_path / "m.pth").exists()


def test_sine_training_uses_its_own_flags(tmp_path):
    out = tmp_path / "s.pth"
    assert main(["train", "--family", "sine", "--mode", "fomaml", "--iterations", "3", "--meta_batch", "2",
                 "--hidden_dim", "5", "--test_tasks", "4", "--quiet", "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["train_config"]["iterations"] == 3 and card["train_config"]["meta_batch"] == 2
    assert card["train_config"]["hidden_dim"] == 5 and card["method"] == "fomaml"
    assert card["train_config"]["max_grad_norm"] == 10.0  # SineConfig's own default, not MetaRLConfig's


def test_shipped_sine_commands_parse_with_the_current_flags():
    import shlex

    for method in ("maml", "fomaml", "multitask"):
        card = json.loads(artifact_path(f"sine_{method}.json").read_text())
        args = build_parser().parse_args(shlex.split(card["command"])[3:])
        assert (args.iterations, args.meta_batch, args.inner_steps) == (10000, 25, 1)
        assert card["train_config"]["iterations"] == 10000 and card["train_config"]["meta_batch"] == 25
