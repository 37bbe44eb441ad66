import os
from pathlib import Path

import pytest

from ssm_metarl import artifact_path, load_card, models_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("where", [".", "book", "notebooks", "tests"])
def test_models_dir_is_found_from_every_place_a_chapter_runs(where, monkeypatch):
    monkeypatch.delenv("SSM_METARL_MODELS", raising=False)
    monkeypatch.chdir(ROOT / where)
    assert models_dir() == ROOT / "models"


def test_models_dir_is_found_from_an_unrelated_directory(tmp_path, monkeypatch):
    # Falls back to the models/ beside the installed (editable) package.
    monkeypatch.delenv("SSM_METARL_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert models_dir() == ROOT / "models"


def test_environment_variable_wins(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.pth").write_bytes(b"")
    monkeypatch.setenv("SSM_METARL_MODELS", str(tmp_path / "models"))
    assert artifact_path("x.pth") == tmp_path / "models" / "x.pth"


def test_missing_artifact_names_what_is_available(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "present.pth").write_bytes(b"")
    monkeypatch.setenv("SSM_METARL_MODELS", str(tmp_path / "models"))
    with pytest.raises(FileNotFoundError, match=r"absent\.pth is not in .*present\.pth"):
        artifact_path("absent.pth")


def test_import_has_no_side_effects(tmp_path):
    import subprocess, sys

    before = set(os.listdir(tmp_path))
    # no files, no output, no logging configuration, no change to torch's threads or global RNG
    code = ("import logging, torch; threads = torch.get_num_threads(); state = torch.random.get_rng_state(); "
            "import ssm_metarl; assert not logging.getLogger().handlers; "
            "assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""
    assert set(os.listdir(tmp_path)) == before


def test_old_artifact_name_resolves_to_the_renamed_file():
    from ssm_metarl import ALIASES, load_card

    assert ALIASES == {"cartpole_hybrid_real_model": "cartpole_goal_maml"}
    assert artifact_path("cartpole_hybrid_real_model.pth") == artifact_path("cartpole_goal_maml.pth")
    card = load_card("cartpole_hybrid_real_model")
    assert card == load_card("cartpole_goal_maml.json") == load_card("cartpole_goal_maml.pth")
    assert card["name"] == "cartpole_goal_maml" and card["aliases"] == ["cartpole_hybrid_real_model"]
    assert "--out models/cartpole_goal_maml.pth" in card["command"]


def test_load_or_train_loads_when_present_and_trains_and_says_so_when_absent(tmp_path, monkeypatch, caplog):
    from ssm_metarl import load_or_train

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "here.txt").write_text("shipped")
    monkeypatch.setenv("SSM_METARL_MODELS", str(tmp_path / "models"))
    trained = []
    loaded = load_or_train("here.txt", train=lambda: trained.append(1) or "fresh", load=lambda p: p.read_text())
    assert (loaded.value, loaded.trained, trained) == ("shipped", False, [])
    assert loaded.source.endswith("here.txt")
    with caplog.at_level("WARNING"):
        fallback = load_or_train("absent.pth", train=lambda: "fresh", load=lambda p: 1 / 0)
    assert (fallback.value, fallback.trained, fallback.source) == ("fresh", True, "trained now")
    assert "absent.pth" in caplog.text and "training a small one" in caplog.text


def test_flip_cards_do_not_call_their_two_tasks_held_out():
    from ssm_metarl.meta.evaluation import evaluation_split
    from ssm_metarl.cartpole.tasks import get_family

    for name in ("cartpole_flip_maml", "cartpole_flip_multitask"):
        assert load_card(name)["evaluation"]["split"].startswith("not held out: the 2 tasks")
    assert "not held out" in evaluation_split(get_family("goal"), 48)
    assert "held-out ranges" in evaluation_split(get_family("physics"), 48)
    for name in ("cartpole_goal_maml", "cartpole_goal_sharp_multitask"):
        assert "held-out tasks" not in load_card(name)["evaluation"]["split"]
