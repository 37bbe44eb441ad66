"""ssm_metarl.report.display: gluing measured values and rendering results tables."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ssm_metarl.report.display import format_value, glue_all, results_table
from ssm_metarl.report.stats import Estimate


class Recorder:
    """Stands in for myst_nb.glue and remembers every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, value, display=True):
        self.calls.append((name, value, display))


EST = Estimate(mean=25.04, low=22.11, high=28.06, n=100)


def test_estimate_is_glued_under_all_its_names_without_display():
    glue = Recorder()
    names = glue_all("random", EST, glue=glue)
    assert {name: value for name, value, _ in glue.calls} == names
    assert names == {
        "random_mean": 25.04, "random_low": 22.11, "random_high": 28.06, "random_n": 100,
        "random_ci": "[22.1, 28.1]", "random": "25.0 [22.1, 28.1]",
    }
    assert all(display is False for _, _, display in glue.calls)


def test_digits_change_the_text_but_not_the_numbers():
    names = glue_all("x", EST, digits=2, glue=Recorder())
    assert names["x"] == "25.04 [22.11, 28.06]"
    assert names["x_mean"] == 25.04


def test_dicts_are_flattened_recursively_and_scalars_become_python_numbers():
    glue = Recorder()
    names = glue_all("ch2", {"steps": np.int64(40_100), "rate": torch.tensor(0.5), "ppo": {"final": EST}}, glue=glue)
    assert names["ch2_steps"] == 40_100 and type(names["ch2_steps"]) is int
    assert names["ch2_rate"] == 0.5 and type(names["ch2_rate"]) is float
    assert names["ch2_ppo_final_high"] == 28.06
    assert names["ch2_ppo_final"] == "25.0 [22.1, 28.1]"
    assert len(glue.calls) == 2 + 6


def test_numbers_and_strings_are_glued_under_the_prefix_itself():
    assert glue_all("seconds", np.float32(1.5), glue=Recorder()) == {"seconds": 1.5}
    assert glue_all("words", "higher than", glue=Recorder()) == {"words": "higher than"}


@pytest.mark.parametrize("bad", [[1, 2], object(), torch.ones(3)])
def test_unsupported_values_are_refused_with_a_hint(bad):
    with pytest.raises(TypeError, match="glue_all"):
        glue_all("x", bad, glue=Recorder())


@pytest.mark.parametrize("prefix", ["", "a b", "a-b", "a:b"])
def test_prefix_must_be_a_glue_name(prefix):
    with pytest.raises(ValueError, match="glue names"):
        glue_all(prefix, 1.0, glue=Recorder())


def test_real_myst_nb_glue_receives_hidden_records(monkeypatch):
    import myst_nb

    seen = Recorder()
    monkeypatch.setattr(myst_nb, "glue", seen)
    glue_all("answer", 42.0)
    assert seen.calls == [("answer", 42.0, False)]


def test_format_value():
    assert format_value(EST) == "25.0 [22.1, 28.1]"
    assert format_value(40100) == "40,100"
    assert format_value(np.int32(7)) == "7"
    assert format_value(3.14159, digits=3) == "3.142"
    assert format_value(True) == "yes"
    assert format_value("PPO from scratch") == "PPO from scratch"
    # a non-zero number never reads as zero: a step size of 0.003 is not "0.0"
    assert format_value(0.003) == "0.003" and format_value(-0.0004) == "-0.0004"
    assert format_value(0.0) == "0.0" and format_value(0.05) == "0.1"


def test_results_table_is_a_markdown_pipe_table():
    table = results_table([("random policy", EST, "the card's 9.4 (reported)"),
                           {"quantity": "steps", "measured (95% CI)": 40100}])
    lines = table.data.splitlines()
    assert lines[0] == "| quantity | measured (95% CI) | compared against |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| random policy | 25.0 [22.1, 28.1] | the card's 9.4 (reported) |"
    assert lines[3] == "| steps | 40,100 |  |"
    assert table._repr_markdown_() == table.data


def test_results_table_escapes_pipes_and_checks_shapes():
    table = results_table([("a | b", 1.0)], columns=("x", "y"))
    assert "a \\| b" in table.data
    with pytest.raises(ValueError, match="2 cells but there are 3 columns"):
        results_table([("a", 1)])
    with pytest.raises(ValueError, match="not columns"):
        results_table([{"quantity": "a", "typo": 1}])


def test_import_stays_light():
    code = "import sys, ssm_metarl.report.display; print('myst_nb' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_without_myst_nb_nothing_is_glued_but_names_are_returned(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb now raises ImportError, as in Colab
    assert glue_all("answer", 42.0) == {"answer": 42.0}


def test_results_table_escapes_a_pipe_in_a_column_name():
    table = results_table([(1,)], columns=("max |difference|",)).data
    assert table.splitlines()[0] == "| max \\|difference\\| |"
