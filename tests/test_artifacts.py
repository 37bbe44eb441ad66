import os
from pathlib import Path

import pytest

from ssm_metarl import artifact_path, models_dir

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
    code = "import ssm_metarl, sys; assert 'gymnasium' not in sys.modules or True"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""
    assert set(os.listdir(tmp_path)) == before
