"""The package's shape (issue 9): small modules, the SSM's maths in ssm.py only, back-links to chapters."""
import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import ssm_metarl

PACKAGE = Path(ssm_metarl.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
OWNED_ELSEWHERE = {"plotting", "display", "adaptation"}  # other chapters' owners keep their own checks


@pytest.mark.parametrize("name", MODULES)
def test_every_module_is_short_and_says_what_it_is(name):
    path = PACKAGE / f"{name}.py"
    assert len(path.read_text().splitlines()) <= 350, f"{name}.py is over 350 lines: split it"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.splitlines()[0]) > 20, f"{name}.py needs a first docstring line saying what it is"


def test_the_ssm_equations_and_layer_names_live_in_ssm_py_only():
    for path in PACKAGE.glob("*.py"):
        if path.name == "ssm.py":
            continue
        code = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith(("#", '"')))
        assert not re.search(r"isinstance\(.*StateSpaceModel", code), path.name
        assert not re.search(r"[\"'](transition|readout|input_map|feedthrough)\b|\.(transition|readout|input_map)\b",
                             code), f"{path.name} knows the SSM's layer names"


def _public(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            yield name, obj


@pytest.mark.parametrize("name", [m for m in MODULES if m not in OWNED_ELSEWHERE | {"cli"}])
def test_every_public_name_names_the_chapter_that_teaches_it(name):
    module = importlib.import_module(f"ssm_metarl.{name}")
    missing = [n for n, obj in _public(module) if not re.search(r"[Cc]hapters? \d", inspect.getdoc(obj) or "")]
    assert not missing, f"ssm_metarl.{name}: no chapter named in the docstring of {missing}"


def test_package_reexports_every_public_name_it_lists():
    for name in ssm_metarl.__all__:
        assert getattr(ssm_metarl, name) is not None
    from ssm_metarl import maml, meta_rl, policy, rl, rollout, ssm

    # names the chapters import from their old homes still resolve
    assert rl.train_reinforce is ssm_metarl.train_reinforce and rl.ReinforceConfig is ssm_metarl.ReinforceConfig
    assert maml.meta_train is ssm_metarl.meta_train and maml.TEST_SEED == meta_rl.TEST_SEED
    assert rollout.select_actions is policy.select_actions and ssm.SCAN_CHUNK == 64
    from ssm_metarl import sine

    assert sine.TEST_SEED == sine.SINE_TEST_SEED


# The floors of the package, bottom first: a module imports (at its top level) only modules listed before it.
ORDER = ["validation", "torchfile", "checkpoint", "artifacts", "stats", "timing", "progress", "tasks", "envs", "ssm", "s4d", "policy",
         "rollout", "rl", "pg", "maml", "meta_rl", "meta_run", "in_context", "sine", "plotting", "display", "adaptation",
         "rsi_search", "rsi", "benchmark", "bench_speed", "bench_peers", "bench_plots", "bench_agents", "bench_report",
         "adaptation_cli", "rsi_cli", "cli"]


def test_imports_point_down_the_floors():
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        assert path.stem in ORDER, f"{path.name} has no floor: add it to ORDER in tests/test_package.py"
        tree = ast.parse(path.read_text())
        imported = {node.module.split(".")[0] for node in tree.body  # top level only: lazy aliases are exempt
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        imported |= {a.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 1
                     and node.module is None for a in node.names}
        later = [m for m in imported if m in ORDER and ORDER.index(m) >= ORDER.index(path.stem)]
        assert not later, f"{path.name} imports {later}, which sit above it"
