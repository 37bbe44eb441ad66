"""Hardening fuzz (issue 12): bad input tried as a hostile user would, counted per category.

Every case must end in its own clear, one-line error (the right exception class and a message
that names the problem), or be handled correctly (the check after it holds); no pickle may
ever run code. `python tests/test_hardening.py` prints the table
category | cases tried | clear error | handled | still open.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import pickle
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import ssm_metarl.io.atomic as atomic_module
import ssm_metarl.io.checkpoint as checkpoint_module
from ssm_metarl import (CartPoleTask, DamagedCheckpointError, DiagonalSSM, MetaMAML, MetaRLConfig, MetaRunState,
                        SSMConfig, StateSpaceModel, UnsafeCheckpointError, WrongCheckpointError, discretize,
                        load_checkpoint, make_env, make_vector_env, parallel_scan, save_checkpoint)
from ssm_metarl.io.atomic import file_sha256
from ssm_metarl.io.checkpoint import CheckpointError
from ssm_metarl.cartpole.tasks import PHYSICS_LIMITS


@dataclass
class Case:
    name: str
    run: Callable[[], Any]
    error: type[BaseException] | tuple | None  # None: the input must be handled (run succeeds)
    match: str = ""  # what the one-line message must say (a regex)
    after: Callable[[], None] | None = None  # must hold afterwards either way (e.g. no code ran)


def outcome(case: Case) -> tuple[str, str]:
    """("clear" | "handled" | "open", what went wrong)."""
    try:
        case.run()
        result = "handled" if case.error is None else "open"
        detail = "" if case.error is None else "no error raised"
    except Exception as exc:
        message = str(exc)
        if case.error is None or not isinstance(exc, case.error):
            return "open", f"{type(exc).__name__}: {message[:300]}"
        if "\n" in message.strip() or not re.search(case.match, message):
            return "open", f"unclear {type(exc).__name__}: {message[:300]}"
        result, detail = "clear", ""
    if case.after is not None:
        try:
            case.after()
        except AssertionError as exc:
            return "open", f"after: {exc}"
    return result, detail


# ------------------------------------------------------------------------------------------------
# unsafe: pickles that would run code
# ------------------------------------------------------------------------------------------------

class _Reduce:
    """Unpickling this calls `fn(*args)`: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker: Path) -> dict[str, Any]:
    touch = f"open({str(marker)!r}, 'w').close()"
    return {"os.system": _Reduce(os.system, f"touch {marker}"), "eval": _Reduce(eval, touch),
            "exec": _Reduce(exec, touch), "subprocess.call": _Reduce(subprocess.call, ["touch", str(marker)]),
            "open": _Reduce(open, str(marker), "w"), "functools.partial": functools.partial(os.system, f"touch {marker}"),
            "importlib.import_module": _Reduce(importlib.import_module, "this")}


def _checkpoint_dict(**parts) -> dict:
    return {"format": checkpoint_module.FORMAT, "version": 1, "kind": "StateSpaceModel", "config": {},
            "state_dict": {}, "extra": {}, **parts}


_WRITERS = {
    "torch zip": lambda obj, p: torch.save(obj, p),
    "torch legacy": lambda obj, p: torch.save(obj, p, _use_new_zipfile_serialization=False),
    **{f"pickle protocol {n}": (lambda n: lambda obj, p: p.write_bytes(pickle.dumps(obj, protocol=n)))(n)
       for n in (0, 2, 4, 5)},
}


def _rewrite_zip(source: Path, target: Path, change) -> Path:
    """Copy a zip, record by record, through `change(name, data) -> data or None (drop)`; CRCs stay valid."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return target


def unsafe_cases(d: Path) -> list[Case]:
    marker = d / "pwned"

    def no_code_ran():
        assert not marker.exists(), "loading a checkpoint ran code from its pickle"

    cases = []
    for pname in _payloads(marker):
        for wname, write in _WRITERS.items():
            path = d / f"{pname}-{wname}.pth".replace(" ", "_")
            write(_checkpoint_dict(extra={"x": _payloads(marker)[pname]}), path)
            cases.append(Case(f"{pname} via {wname}", functools.partial(load_checkpoint, path),
                              UnsafeCheckpointError, "could run code", no_code_ran))
        for where, obj in (("nested", _checkpoint_dict(extra={"a": [{"b": (1, [_payloads(marker)[pname]])}]})),
                           ("as a weight", _checkpoint_dict(state_dict={"w": _payloads(marker)[pname]}))):
            path = d / f"{pname}-{where}.pth".replace(" ", "_")
            torch.save(obj, path)
            cases.append(Case(f"{pname} {where}", functools.partial(load_checkpoint, path), UnsafeCheckpointError,
                              "could run code", no_code_ran))
    model = StateSpaceModel(4, 4, 4, 8).save(d / "clean.pth")
    evil = pickle.dumps(_checkpoint_dict(extra={"x": _payloads(marker)["os.system"]}), protocol=2)
    swapped = _rewrite_zip(model, d / "swapped.pth", lambda n, b: evil if n.endswith("data.pkl") else b)
    cases.append(Case("data.pkl swapped in a real model's zip", functools.partial(load_checkpoint, swapped),
                      UnsafeCheckpointError, "could run code", no_code_ran))
    with zipfile.ZipFile(d / "extra_pickle.pth", "w") as out, zipfile.ZipFile(model) as src:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("archive/extra.pkl", evil)
    cases.append(Case("a second pickle inside the zip", functools.partial(load_checkpoint, d / "extra_pickle.pth"),
                      UnsafeCheckpointError, "could run code", no_code_ran))
    return cases


# ------------------------------------------------------------------------------------------------
# damaged: truncated, missing or short records, failed checksums, a card out of step
# ------------------------------------------------------------------------------------------------

def _data_offset(path: Path, member: str) -> int:
    """Where `member`'s bytes start in the zip (its local header has its own extra field)."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    head = path.read_bytes()[offset:offset + 30]
    name_length, extra_length = struct.unpack("<HH", head[26:30])
    return offset + 30 + name_length + extra_length


def damaged_cases(d: Path) -> list[Case]:
    base = StateSpaceModel().save(d / "base.pth")
    data, cases = base.read_bytes(), []

    def case(name, path, match=r"damaged|truncated|corrupt"):
        cases.append(Case(name, functools.partial(load_checkpoint, path), DamagedCheckpointError, match))

    for fraction in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99):
        (d / f"cut{fraction}.pth").write_bytes(data[: int(len(data) * fraction)])
        case(f"truncated at {fraction:.0%}", d / f"cut{fraction}.pth")
    (d / "cut1.pth").write_bytes(data[:-1])
    case("last byte cut", d / "cut1.pth")
    for k in (0, 3, 7, 11):
        case(f"record data/{k} missing", _rewrite_zip(base, d / f"missing{k}.pth",
                                                     lambda n, b, k=k: None if n.endswith(f"/data/{k}") else b),
             f"data/{k} is missing")
    case("record data.pkl missing", _rewrite_zip(base, d / "nopkl.pth", lambda n, b: None if n.endswith("data.pkl") else b),
         "data.pkl is missing")
    case("record version missing", _rewrite_zip(base, d / "noversion.pth",
                                                lambda n, b: None if n.endswith("/version") else b))
    for k in (0, 5, 11):
        case(f"record data/{k} short", _rewrite_zip(base, d / f"short{k}.pth",
                                                   lambda n, b, k=k: b[: len(b) // 2] if n.endswith(f"/data/{k}") else b),
             f"data/{k} has \\d+ bytes, needs")
    for member in ("archive/data/0", "archive/data/4", "archive/data/10", "archive/data.pkl"):
        flipped = bytearray(data)
        flipped[_data_offset(base, member) + 5] ^= 0xFF
        (d / f"flip{member[-1]}.pth").write_bytes(bytes(flipped))
        case(f"one byte flipped in {member}", d / f"flip{member[-1]}.pth", "CRC|damaged")
    end = bytearray(data)
    at = data.rindex(b"PK\x05\x06")
    end[at:at + 4] = b"XXXX"
    (d / "noend.pth").write_bytes(bytes(end))
    case("zip end record overwritten", d / "noend.pth")
    legacy = d / "legacy.pth"
    torch.save(_checkpoint_dict(state_dict={"w": torch.ones(1000)}), legacy, _use_new_zipfile_serialization=False)
    (d / "legacy_cut.pth").write_bytes(legacy.read_bytes()[: legacy.stat().st_size // 2])
    case("legacy torch file truncated", d / "legacy_cut.pth")
    (d / "pickle_cut.pth").write_bytes(pickle.dumps(_checkpoint_dict(), protocol=2)[:40])
    case("raw pickle truncated", d / "pickle_cut.pth")
    paired = StateSpaceModel().save(d / "pair.pth", card={"name": "pair"})
    StateSpaceModel(hidden_dim=64).save(d / "other.pth")
    os.replace(d / "other.pth", paired)  # the weights replaced without their card
    case("weights replaced, card one version behind", paired, "card pair.json describes other weights")
    StateSpaceModel().save(d / "badcard.pth", card={"name": "x"})
    (d / "badcard.json").write_text('{"name": "x", "weights_sha')
    case("card cut short", d / "badcard.pth", "card is not a JSON object")
    return cases


# ------------------------------------------------------------------------------------------------
# wrong: intact files that are not what the caller asked for
# ------------------------------------------------------------------------------------------------

def wrong_cases(d: Path) -> list[Case]:
    cases = []
    model = StateSpaceModel(state_dim=16)
    good = model.save(d / "model.pth")
    sd = model.state_dict()

    def saved(name, state_dict, **kw):
        return save_checkpoint(d / name, kind="StateSpaceModel", config={**SSMConfig(state_dim=16).__dict__, **kw},
                               state_dict=state_dict)

    first = next(iter(sd))
    files = {
        "config mismatch (state_dim)": (lambda: StateSpaceModel().load(good), "state_dim=16, model expects 32"),
        "kind mismatch": (lambda: load_checkpoint(good, kind="DiagonalSSM"), "holds a StateSpaceModel, expected a DiagonalSSM"),
        "missing key": (lambda: StateSpaceModel.load(saved("miss.pth", {k: v for k, v in sd.items() if k != first})),
                        rf"missing \['{re.escape(first)} \(\d+, \d+\)'\]"),
        "extra key": (lambda: StateSpaceModel.load(saved("extra.pth", {**sd, "bonus.weight": torch.ones(3, 2)})),
                      r"unexpected \['bonus.weight \(3, 2\)'\]"),
        "shape mismatch": (lambda: StateSpaceModel.load(saved("shape.pth", {**sd, first: torch.ones(3, 3)})),
                           rf"{re.escape(first)} is \(3, 3\) in the file, \(\d+, \d+\) in the model"),
        "int64 weights": (lambda: StateSpaceModel.load(saved("int.pth", {**sd, first: sd[first].long()})),
                          "dtype torch.int64 in the file, torch.float32 in the model"),
        "complex weights": (lambda: StateSpaceModel.load(saved("cplx.pth", {**sd, first: sd[first].to(torch.complex64)})),
                            "dtype torch.complex64 in the file"),
        "float64 weights": (lambda: StateSpaceModel.load(saved("f64.pth", {**sd, first: sd[first].double()})),
                            "dtype torch.float64 in the file"),
        "NaN weights": (lambda: StateSpaceModel.load(saved("nan.pth", {**sd, first: torch.full_like(sd[first], float("nan"))})),
                        rf"\d+ NaN/inf values in 1 tensor\(s\) \(state_dict.{re.escape(first)} has \d+ of \d+\)"),
        "inf weights": (lambda: StateSpaceModel.load(saved("inf.pth", {**sd, first: sd[first].clone().fill_(float("inf"))})),
                        "NaN/inf values"),
        "NaN in an extra tensor": (lambda: load_checkpoint(save_checkpoint(d / "x.pth", kind="T", config={}, state_dict={},
                                                                           extra={"best": {"w": torch.tensor([1.0, float("nan")])}})),
                                   r"1 NaN/inf values .*extra.best.w has 1 of 2"),
        "unknown config field": (lambda: load_checkpoint(good, expected_config={"state_dim": 16}), "unknown fields"),
        "config not an SSMConfig": (lambda: StateSpaceModel.load(save_checkpoint(d / "cfg.pth", kind="StateSpaceModel",
                                                                                config={"state_dim": -1}, state_dict=sd)),
                                    "does not fit SSMConfig"),
    }
    for name, (run, match) in files.items():
        cases.append(Case(name, run, WrongCheckpointError, match))
    (d / "text.pth").write_text("hello")
    (d / "empty.pth").write_bytes(b"")
    (d / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    with zipfile.ZipFile(d / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    torch.save({"weights": torch.ones(2)}, d / "foreign.pth")
    torch.save(_checkpoint_dict(version=99), d / "future.pth")
    torch.save(_checkpoint_dict(config=[]), d / "malformed.pth")
    for name, match in (("text.pth", "not a torch file"), ("empty.pth", "not a torch file"), ("plain.pkl", "plain pickle"),
                        ("other.zip", "zip archive without torch data"), ("foreign.pth", "missing format marker"),
                        ("future.pth", "version 99"), ("malformed.pth", "'config' is missing or malformed")):
        cases.append(Case(f"{name} is not our checkpoint", functools.partial(load_checkpoint, d / name),
                          WrongCheckpointError, match))
    cases.append(Case("NaN weights with allow_nonfinite=True", lambda: StateSpaceModel.load(d / "nan.pth", allow_nonfinite=True),
                      None))
    return cases


# ------------------------------------------------------------------------------------------------
# saves: atomic pairs, kills, stale temporary files, directory fsync, bad arguments
# ------------------------------------------------------------------------------------------------

def _pair_in_step(path: Path) -> None:
    load_checkpoint(path)  # completes a killed save's card if one is pending
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["weights_sha256"] == file_sha256(path), "card and weights out of step"


#: A helper process that imports torch once and then forks one saver per request (forking the test
#: process itself could deadlock on torch's thread pool); each saver writes model + card in a loop.
_ZYGOTE = r"""
import os, sys, torch
from ssm_metarl.io.checkpoint import save_checkpoint
torch.set_num_threads(1)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(100_000):
                save_checkpoint(sys.argv[1], kind="Blob", config={"i": i}, card={"i": i},
                                state_dict={"w": torch.full((300_000,), float(i))})
        finally:
            os._exit(0)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def _kill_during_save(zygote, path: Path, delay: float, seen: list) -> None:
    """Start a saver, SIGKILL it after `delay` s (no cleanup can run); the pair must be in step."""
    zygote.stdin.write("go\n")
    zygote.stdin.flush()
    pid = int(zygote.stdout.readline())
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    assert zygote.stdout.readline().strip() == "reaped"
    seen.append(sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")))
    _pair_in_step(path)


def saves_cases(d: Path) -> list[Case]:
    cases = [
        Case("kind=None", lambda: save_checkpoint(d / "a.pth", kind=None, config={}, state_dict={}), ValueError,
             "kind must be a non-empty string"),
        Case("kind=''", lambda: save_checkpoint(d / "a.pth", kind="", config={}, state_dict={}), ValueError, "kind must"),
        Case("state_dict not tensors", lambda: save_checkpoint(d / "a.pth", kind="T", config={}, state_dict={"w": [1.0]}),
             ValueError, "state_dict must map str names to tensors"),
        Case("numpy float in extra", lambda: save_checkpoint(d / "a.pth", kind="T", config={}, state_dict={},
                                                             extra={"x": np.float64(1)}), ValueError, "numpy.float64"),
    ]
    rng, seen = random.Random(0), []
    save_checkpoint(d / "killed.pth", kind="Blob", config={"i": -1}, state_dict={"w": torch.zeros(300_000)}, card={"i": -1})
    zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(d / "killed.pth")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    for k in range(16):
        delay = rng.uniform(0.05, 0.25)
        cases.append(Case(f"SIGKILL during a save after {delay * 1000:.0f} ms",
                          functools.partial(_kill_during_save, zygote, d / "killed.pth", delay, seen), None))

    def kills_hit_saves():
        zygote.stdin.close()
        zygote.wait(timeout=60)
        finished = json.loads((d / "killed.json").read_text())["i"] >= 0  # some saver finished a save
        inside = sum(bool(tmp) for tmp in seen)  # kills that left a save's temporary files behind
        assert finished and inside >= 3 or inside >= 8, f"kills inside a save: {inside}, a save finished: {finished}"

    cases.append(Case("the kills landed inside saves (temporary files were left)", kills_hit_saves, None))

    def next_save_cleans_up():
        save_checkpoint(d / "killed.pth", kind="Blob", config={}, state_dict={"w": torch.ones(3)}, card={"i": "last"})
        stray = sorted(p.name for p in d.iterdir() if p.name.startswith(".killed."))
        assert not stray, f"stray temporary files after the next save: {stray}"
        _pair_in_step(d / "killed.pth")

    cases.append(Case("the next save removes every stale temporary file", next_save_cleans_up, None))

    def legacy_stale_names():
        for name in (".m.pth.abc123.tmp", ".m.pth.999999999.x.tmp", ".m.json.q.tmp"):
            (d / name).write_bytes(b"junk")
        StateSpaceModel().save(d / "m.pth", card={"name": "m"})
        assert not [p for p in d.iterdir() if p.name.startswith(".m.")], "old-style temporary files left"

    cases.append(Case("stale files of the old naming scheme removed", legacy_stale_names, None))

    def card_completed_after_kill_between_moves():
        StateSpaceModel().save(d / "half.pth", card={"v": 1})
        old_card = (d / "half.json").read_text()
        StateSpaceModel(hidden_dim=8).save(d / "half.pth", card={"v": 2})
        os.replace(d / "half.json", d / ".half.json.999999999.pending.tmp")  # as if killed between the two moves
        (d / "half.json").write_text(old_card)
        assert StateSpaceModel.load(d / "half.pth").hidden_dim == 8
        assert json.loads((d / "half.json").read_text())["v"] == 2

    cases.append(Case("kill between the two moves: the pending card completes the pair", card_completed_after_kill_between_moves, None))

    def directory_fsynced():
        calls = []
        original = atomic_module._fsync_dir
        atomic_module._fsync_dir = lambda directory: calls.append(Path(directory))
        try:
            save_checkpoint(d / "sync.pth", kind="T", config={}, state_dict={}, card={})
        finally:
            atomic_module._fsync_dir = original
        assert calls == [d], f"directory fsync calls: {calls}"

    cases.append(Case("directory fsynced after os.replace", directory_fsynced, None))

    def interrupted_save_keeps_old_file():
        path = save_checkpoint(d / "keep.pth", kind="T", config={"n": 1}, state_dict={})
        before, original = path.read_bytes(), checkpoint_module.torch.save

        def crash(obj, f):
            f.write(b"PK\x03\x04 half")
            raise KeyboardInterrupt

        checkpoint_module.torch.save = crash
        try:
            save_checkpoint(path, kind="T", config={"n": 2}, state_dict={}, card={})
        except KeyboardInterrupt:
            pass
        finally:
            checkpoint_module.torch.save = original
        assert path.read_bytes() == before and not [p for p in d.iterdir() if p.name.startswith(".keep.")]

    cases.append(Case("Ctrl-C inside torch.save leaves the old file and no temporary", interrupted_save_keeps_old_file, None))
    return cases


# ------------------------------------------------------------------------------------------------
# resume: tampered run states
# ------------------------------------------------------------------------------------------------

def _resume_file(d: Path) -> tuple[Path, MetaRLConfig]:
    config = MetaRLConfig(family="goal", epochs=4, tasks_per_epoch=2, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = StateSpaceModel(8, 4, 4, 16)
    maml = MetaMAML(model, config.inner_lr, config.outer_lr)
    maml.step(sum((p ** 2).sum() for p in model.parameters()))  # Adam has state to save
    run = MetaRunState(history={"epoch": [0, 1], "pre_return": [10.0, 12.0]}, validation={"epoch": [1], "pre": [11.0]},
                       best_state={k: v.clone() for k, v in model.state_dict().items()}, best_epoch=1, best_score=11.0,
                       next_epoch=2, env_steps=100, seconds=1.5)
    path = d / "run.resume.pth"
    run.save(path, model, maml, config)
    return path, config


def _tampered(path: Path, target: Path, change) -> Path:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, target)
    return target


def resume_cases(d: Path) -> list[Case]:
    path, config = _resume_file(d)

    def load(p, cfg=config, sizes=(8, 4, 4, 16)):
        model = StateSpaceModel(*sizes)
        return MetaRunState.load(p, model, MetaMAML(model, cfg.inner_lr, cfg.outer_lr), cfg)

    def extra(key, value):
        return lambda p: p["extra"].__setitem__(key, value)

    def nan_weight(p):
        next(iter(p["state_dict"].values())).fill_(float("nan"))

    def nan_adam(p):
        next(iter(p["extra"]["maml"]["optimizer"]["state"].values()))["exp_avg"].fill_(float("nan"))

    def bad_adam_shape(p):
        state = next(iter(p["extra"]["maml"]["optimizer"]["state"].values()))
        state["exp_avg"] = torch.zeros(3, 3)

    tamperings = {
        "next_epoch missing": (lambda p: p["extra"].pop("next_epoch"), r"missing \['next_epoch'\]"),
        "maml state missing": (lambda p: p["extra"].pop("maml"), r"missing \['maml'\]"),
        "history not a dict": (extra("history", [1, 2]), "history must be a dict of lists"),
        "next_epoch=-5": (extra("next_epoch", -5), "next_epoch must be an int >= 0, got -5"),
        "next_epoch beyond the history": (extra("next_epoch", 3), "next_epoch is 3 but the history has 2"),
        "best_epoch in the future": (extra("best_epoch", 9), "best_epoch must be an epoch already run"),
        "best_score NaN": (extra("best_score", float("nan")), "best_score must be a finite number"),
        "seconds negative": (extra("seconds", -1.0), "seconds must be a finite number >= 0"),
        "env_steps a string": (extra("env_steps", "many"), "env_steps must be an int"),
        "NaN weights": (nan_weight, r"NaN/inf values"),
        "NaN in Adam's state": (nan_adam, r"NaN/inf values .*exp_avg"),
        "Adam state of another shape": (bad_adam_shape, "optimizer state does not fit"),
        "config field removed": (lambda p: p["config"].pop("inner_lr"), r"differs in \['inner_lr'\]"),
        "best_state of another model": (extra("best_state", {"w": torch.ones(2)}), "best_state: weights do not fit"),
    }
    cases = [Case(name, functools.partial(load, _tampered(path, d / f"t{i}.pth", change)), WrongCheckpointError,
                  match + ".*pass resume=False")
             for i, (name, (change, match)) in enumerate(tamperings.items())]
    cases += [
        Case("fewer epochs than already run", lambda: load(path, MetaRLConfig(family="goal", epochs=1, tasks_per_epoch=2)),
             WrongCheckpointError, "already done 2 epochs but epochs=1.*pass resume=False"),
        Case("another inner_lr", lambda: load(path, MetaRLConfig(family="goal", epochs=4, tasks_per_epoch=2, inner_lr=0.5)),
             WrongCheckpointError, r"differs in \['inner_lr'\]: inner_lr=0.01 there, 0.5 here"),
        Case("another model size", lambda: load(path, sizes=(16, 4, 4, 16)), WrongCheckpointError,
             r"another model size.*is \(\d+, 8\) in the file, \(\d+, 16\) in the model"),
        Case("truncated resume file", lambda: load(_cut(path, d / "cut.resume.pth")), DamagedCheckpointError,
             "truncated.*pass resume=False"),
        Case("an intact resume file loads", lambda: load(path), None),
    ]
    return cases


def _cut(path: Path, target: Path) -> Path:
    target.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return target


# ------------------------------------------------------------------------------------------------
# cli: bad flags fail before any work, in one line with exit 2; Ctrl-C in one line
# ------------------------------------------------------------------------------------------------

class UsageError(Exception):
    """The CLI's argparse error: exit 2, one `error:` line, no traceback."""


@contextlib.contextmanager
def _no_training():
    from ssm_metarl.meta import sine
    from ssm_metarl.meta import training as meta_run

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    saved = meta_run.meta_train, sine.train_sine
    meta_run.meta_train = sine.train_sine = refuse
    try:
        yield
    finally:
        meta_run.meta_train, sine.train_sine = saved


def cli(argv: list[str]) -> None:
    from ssm_metarl.cli import main

    err = io.StringIO()
    with _no_training(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    text = err.getvalue()
    errors = [line for line in text.splitlines() if "error:" in line]
    if code == 2 and len(errors) == 1 and "Traceback" not in text:
        raise UsageError(errors[0].split("error: ", 1)[1])
    raise AssertionError(f"exit {code}, stderr {text[-400:]!r}")


def interrupted(argv: list[str], after_resume: Path | None = None) -> None:
    """Ctrl-C during training: exit 130 and exactly one line on stderr."""
    from ssm_metarl.meta import training as meta_run
    from ssm_metarl.cli import main

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    err, saved = io.StringIO(), meta_run.meta_train
    meta_run.meta_train = ctrl_c
    try:
        with contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        meta_run.meta_train = saved
    lines = err.getvalue().strip().splitlines()
    if code == 130 and len(lines) == 1:
        raise UsageError(lines[0])
    raise AssertionError(f"exit {code}, stderr {err.getvalue()[-300:]!r}")


def cli_cases(d: Path) -> list[Case]:
    out = str(d / "m.pth")
    (d / "adir.pth").mkdir()
    (d / "clash.json").mkdir()
    bad = {
        "--epochs -5": (["--epochs", "-5"], "--epochs must be a positive int, got -5"),
        "--epochs abc": (["--epochs", "abc"], "invalid int value"),
        "--family bogus": (["--family", "bogus"], "unknown task family 'bogus'; valid choices"),
        "--state_dim 0": (["--state_dim", "0"], "--state_dim must be a positive int"),
        "--hidden_dim -3": (["--hidden_dim", "-3"], "--hidden_dim must be a positive int"),
        "--threads 0": (["--threads", "0"], "--threads must be a positive int"),
        "--test_tasks 0": (["--test_tasks", "0"], "--test_tasks must be a positive int"),
        "--max_minutes -1": (["--max_minutes", "-1"], "--max_minutes must be a positive number"),
        "--max_minutes nan": (["--max_minutes", "nan"], "--max_minutes must be a positive number"),
        "--inner_lr nan": (["--inner_lr", "nan"], "--inner_lr must be a positive finite number"),
        "--outer_lr -1": (["--outer_lr", "-1"], "--outer_lr must be a positive finite number"),
        "--gamma 2": (["--gamma", "2"], "--gamma must be in \\[0, 1\\]"),
        "--seed -1": (["--seed", "-1"], "--seed must be an int >= 0"),
        "--mode hybrid": (["--mode", "hybrid"], "invalid choice: 'hybrid'"),
        "--tasks_per_epoch 0": (["--tasks_per_epoch", "0"], "--tasks_per_epoch must be a positive int"),
        "sine --iterations 0": (["--family", "sine", "--iterations", "0"], "--iterations must be a positive int"),
        "sine --inner_lr -1": (["--family", "sine", "--inner_lr", "-1"], "--inner_lr must be a positive finite number"),
        "sine with --epochs": (["--family", "sine", "--epochs", "3"], "--epochs do\\(es\\) not apply to --family sine"),
    }
    cases = [Case(name, functools.partial(cli, ["train", *flags, "--quiet", "--out", out]), UsageError, match)
             for name, (flags, match) in bad.items()]
    for name, target, match in (("--out /dev/null/x.pth", "/dev/null/x.pth", "/dev/null is not a directory"),
                                ("--out an existing directory", str(d / "adir.pth"), "is a directory; name a file"),
                                ("--out whose card path is a directory", str(d / "clash.pth"), "clash.json is a directory"),
                                ("--out without .pth", str(d / "m.pt"), "--out must end in .pth"),
                                ("--out in an unwritable place", "/proc/ssm/m.pth", "cannot write in /proc"),
                                ("--out ''", "", "--out must end in .pth")):
        cases.append(Case(name, functools.partial(cli, ["train", "--quiet", "--out", target]), UsageError, match))
    cases.append(Case("bench bogus", functools.partial(cli, ["bench", "bogus"]), UsageError, "unknown benchmark 'bogus'"))
    resume, _ = _resume_file(d)  # a run of goal, epochs=4, tasks_per_epoch=2, 8 states, 16 hidden
    os.replace(resume, d / "r.resume.pth")
    run = ["train", "--family", "goal", "--epochs", "4", "--tasks_per_epoch", "2", "--quiet", "--out", str(d / "r.pth")]
    sizes = ["--state_dim", "8", "--hidden_dim", "16"]
    for name, flags, match in (("resume with another --state_dim", ["--state_dim", "16", "--hidden_dim", "16"],
                                r"another model size.*\(\d+, 8\) in the file, \(\d+, 16\) in the model"),
                               ("resume with another --hidden_dim", ["--state_dim", "8", "--hidden_dim", "32"],
                                r"another model size"),
                               ("resume with another --inner_lr", [*sizes, "--inner_lr", "0.5"], r"differs in \['inner_lr'\]"),
                               ("resume with another --seed", [*sizes, "--seed", "3"], r"differs in \['seed'\]"),
                               ("resume with fewer --epochs", [*sizes, "--epochs", "1"], "already done 2 epochs")):
        cases.append(Case(name, functools.partial(cli, run + flags), UsageError, match + ".*pass --no-resume"))
    nan = _tampered(d / "r.resume.pth", d / "n.resume.pth", lambda p: next(iter(p["state_dict"].values())).fill_(float("nan")))
    cases.append(Case("resume from a NaN run state", functools.partial(cli, run[:-1] + [str(d / "n.pth"), *sizes]),
                      UsageError, "NaN/inf values.*pass --no-resume"))
    _cut(d / "r.resume.pth", d / "c.resume.pth")
    cases.append(Case("resume from a truncated run state", functools.partial(cli, run[:-1] + [str(d / "c.pth"), *sizes]),
                      UsageError, "truncated.*pass --no-resume"))
    assert nan.exists()
    cases.append(Case("Ctrl-C after a validation", functools.partial(interrupted, run + sizes), UsageError,
                      f"interrupted: the run is saved in {re.escape(str(d / 'r.resume.pth'))}; run the same command"))
    cases.append(Case("Ctrl-C before the first validation",
                      functools.partial(interrupted, ["train", "--epochs", "2", "--quiet", "--out", str(d / "fresh.pth")]),
                      UsageError, "interrupted before the first validation: no resume file yet"))
    return cases


def cli_subprocess_case(d: Path) -> Case:
    """The real command line: no traceback, exit 2, one line, in a fresh interpreter."""
    def run():
        done = subprocess.run([sys.executable, "-m", "ssm_metarl", "train", "--epochs", "-5", "--out", str(d / "x.pth")],
                              capture_output=True, text=True, timeout=120)
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        if done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr:
            raise UsageError(errors[0])
        raise AssertionError(f"exit {done.returncode}: {done.stderr[-300:]}")

    return Case("python -m ssm_metarl train --epochs -5 (subprocess)", run, UsageError, "--epochs must be a positive int")


# ------------------------------------------------------------------------------------------------
# inputs: the SSM, the S4D layer, the scan, the discretisation
# ------------------------------------------------------------------------------------------------

def inputs_cases(d: Path) -> list[Case]:
    m = StateSpaceModel()
    h = m.init_hidden(2)
    bad_x = {"float64": torch.randn(2, 4, dtype=torch.float64), "int64": torch.ones(2, 4, dtype=torch.long),
             "numpy": np.zeros((2, 4), np.float32), "list": [[0.0] * 4] * 2, "None": None, "empty batch": torch.zeros(0, 4)}
    msg = {"float64": "dtype torch.float64 but the model's weights are torch.float32",
           "int64": "dtype torch.int64 but", "numpy": "must be a torch.Tensor .* got ndarray",
           "list": "must be a torch.Tensor .* got list", "None": "must be a torch.Tensor .* got NoneType",
           "empty batch": "is empty"}
    cases = [Case(f"StateSpaceModel.forward({kind})", functools.partial(m, x, h if kind != "empty batch" else m.init_hidden(1)[:0]),
                  (TypeError, ValueError), msg[kind]) for kind, x in bad_x.items()]
    cases.append(Case("StateSpaceModel.forward(hidden float64)", lambda: m(torch.zeros(2, 4), h.double()), TypeError,
                      "hidden has dtype torch.float64"))
    for kind, xs in {"float64": torch.zeros(2, 3, 4, dtype=torch.float64), "numpy": np.zeros((2, 3, 4), np.float32),
                     "None": None, "no steps": torch.zeros(2, 0, 4), "empty batch": torch.zeros(0, 3, 4)}.items():
        cases.append(Case(f"forward_sequence({kind})", functools.partial(m.forward_sequence, xs), (TypeError, ValueError),
                          {"no steps": "at least one time step", "empty batch": "is empty"}.get(kind, msg.get(kind, ""))))
    cases.append(Case("outputs(float64)", lambda: m.outputs(torch.zeros(1, 2, 4, dtype=torch.float64)), TypeError,
                      "inputs has dtype torch.float64"))
    cases.append(Case("outputs(list)", lambda: m.outputs([[[0.0] * 4]]), TypeError, "inputs must be a torch.Tensor"))
    cases.append(Case("SSMConfig(bounded='no')", lambda: StateSpaceModel(bounded="no"), ValueError,
                      "bounded must be True or False, got 'no'"))
    layer = DiagonalSSM(4, 3)
    nan_last = torch.randn(2, 200, 4)
    nan_last[0, -1, 0] = float("nan")
    bad_u = {"float64": (torch.randn(2, 5, 4, dtype=torch.float64), "dtype torch.float64 but the layer's weights"),
             "int64": (torch.ones(2, 5, 4, dtype=torch.long), "dtype torch.int64"),
             "numpy": (np.zeros((2, 5, 4), np.float32), "must be a torch.Tensor, got ndarray"),
             "list": ([[[0.0] * 4]], "must be a torch.Tensor, got list"), "None": (None, "got NoneType"),
             "empty batch": (torch.zeros(0, 5, 4), "empty batch"), "NaN at the last of 200 steps": (nan_last, "1 NaN/inf"),
             "inf": (torch.full((1, 3, 4), float("inf")), "12 NaN/inf"), "no steps": (torch.zeros(2, 0, 4), "L >= 1")}
    for kind, (u, match) in bad_u.items():
        for mode in ("recurrence", "scan", "fft"):
            cases.append(Case(f"DiagonalSSM {mode}({kind})", functools.partial(layer, u, mode), (TypeError, ValueError), match))
    cases.append(Case("DiagonalSSM.step(NaN)", lambda: layer.step(torch.full((1, 4), float("nan")), layer.init_state(1)),
                      ValueError, "u_t has 4 NaN/inf"))
    cases.append(Case("DiagonalSSM modes agree on every bad input", functools.partial(_modes_agree, layer, bad_u), None))
    cases.append(Case("float64 layer and float64 input agree across modes", _double_layer_agrees, None))
    for name, args in {"empty sequence": (torch.ones(1), torch.zeros(1, 0)), "1-d b": (torch.ones(1), torch.zeros(0)),
                       "b not a tensor": (torch.ones(1), [[1.0]])}.items():
        cases.append(Case(f"parallel_scan({name})", functools.partial(parallel_scan, *args), ValueError,
                          r"b must be a tensor of shape \(B, L, ...\) with L >= 1"))
    for dt in (float("inf"), float("nan"), 0.0, -1.0, torch.tensor([0.1, float("inf")])):
        cases.append(Case(f"discretize(dt={dt})", functools.partial(discretize, torch.tensor([-1.0]), torch.tensor([1.0]), dt),
                          ValueError, "dt must be finite and positive"))
    for kw in ({"dt_max": float("inf")}, {"dt_min": float("nan")}, {"dt_min": 0.5, "dt_max": 0.1}):
        cases.append(Case(f"DiagonalSSM({kw})", functools.partial(DiagonalSSM, 4, 3, **kw), ValueError, "dt_m"))
    return cases


def _modes_agree(layer, bad_u) -> None:
    for kind, (u, _) in bad_u.items():
        seen = set()
        for mode in ("recurrence", "scan", "fft"):
            try:
                layer(u, mode)
            except (TypeError, ValueError) as exc:
                seen.add((type(exc), str(exc)))
        assert len(seen) == 1, f"{kind}: the modes disagree: {seen}"


def _double_layer_agrees() -> None:
    layer = DiagonalSSM(4, 3).double()
    u = torch.randn(2, 40, 4, dtype=torch.float64)
    with torch.no_grad():
        ys = [layer(u, mode) for mode in ("recurrence", "scan", "fft")]
    assert all(y.dtype == torch.float64 and torch.allclose(y, ys[0], atol=1e-10) for y in ys)


# ------------------------------------------------------------------------------------------------
# physics: task values and environment actions
# ------------------------------------------------------------------------------------------------

def physics_cases(d: Path) -> list[Case]:
    cases = []
    for kw, match in (({"masspole": 1e300}, r"masspole must be a number in \[0.001, 10\], got 1e\+300"),
                      ({"gravity": float("inf")}, "gravity must be a positive finite number"),
                      ({"gravity": float("nan")}, "gravity must be a positive"),
                      ({"gravity": -9.8}, "gravity must be a positive"), ({"length": 0.0}, "length must be a positive"),
                      ({"length": 1e6}, r"length must be a number in \[0.01, 10\]"),
                      ({"force_mag": 1e9}, r"force_mag must be a number in \[0.1, 1000\]"),
                      ({"masscart": 1e-12}, r"masscart must be a number in \[0.01, 100\]"),
                      ({"gravity": "9.8"}, "gravity must be a positive"), ({"max_steps": 0}, "max_steps must be a positive int"),
                      ({"goal": 5.0}, "goal must be None or a number in"), ({"flip": "yes"}, "flip must be True or False")):
        cases.append(Case(f"CartPoleTask({kw})", functools.partial(CartPoleTask, **kw), ValueError, match))
    venv = make_vector_env([CartPoleTask(flip=True)] * 4)
    venv.reset(seed=0)
    for name, action, match in (("action 2 on a flip vector env", np.array([0, 1, 2, 0]), "got 2 at index 2"),
                                ("action -1", np.array([-1, 0, 0, 0]), "got -1 at index 0"),
                                ("float actions", np.array([0.0, 1.0, 1.0, 0.0]), "dtype float64"),
                                ("too few actions", np.array([0, 1]), r"need 4 actions.*shape \(2,\)")):
        cases.append(Case(name, functools.partial(venv.step, action), ValueError, match))
    env = make_env(CartPoleTask(flip=True))
    env.reset(seed=0)
    for action in (2, -1, 0.5):
        cases.append(Case(f"action {action} on a flip env", functools.partial(env.step, action), ValueError,
                          "need an action, 0 \\(push left\\) or 1 \\(push right\\)"))
    cases.append(Case("make_vector_env(max_episode_steps=0)", lambda: make_vector_env([CartPoleTask()], max_episode_steps=0),
                      ValueError, "max_episode_steps must be a positive int"))
    cases.append(Case("every corner of PHYSICS_LIMITS simulates finitely", _corners_finite, None))
    return cases


def _corners_finite() -> None:
    import itertools

    tasks = [CartPoleTask(**dict(zip(PHYSICS_LIMITS, corner))) for corner in itertools.product(*PHYSICS_LIMITS.values())]
    env = make_vector_env(tasks, max_episode_steps=200)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(250):
        obs, reward, *_ = env.step(rng.integers(0, 2, len(tasks)))
        assert np.isfinite(obs).all() and np.isfinite(reward).all()


CATEGORIES = {"unsafe": unsafe_cases, "damaged": damaged_cases, "wrong": wrong_cases, "saves": saves_cases,
              "resume": resume_cases, "cli": cli_cases, "inputs": inputs_cases, "physics": physics_cases}
EXPECTED_MINIMUM = {"unsafe": 40, "damaged": 25, "wrong": 20, "saves": 15, "resume": 18, "cli": 30, "inputs": 50,
                    "physics": 20}


def run_all(root: Path, subprocess_case: bool = True) -> dict[str, list[tuple[str, str, str]]]:
    torch.set_num_threads(1)
    results = {}
    for category, build in CATEGORIES.items():
        d = root / category
        d.mkdir(parents=True, exist_ok=True)
        cases = build(d)
        if category == "cli" and subprocess_case:
            cases.append(cli_subprocess_case(d))
        results[category] = [(case.name, *outcome(case)) for case in cases]
    return results


def table(results) -> str:
    rows = ["category | cases tried | clear error | handled | still open", "---|---|---|---|---"]
    for category, found in results.items():
        count = {k: sum(o == k for _, o, _ in found) for k in ("clear", "handled", "open")}
        rows.append(f"{category} | {len(found)} | {count['clear']} | {count['handled']} | {count['open']}")
    total = [r for found in results.values() for r in found]
    rows.append(f"total | {len(total)} | {sum(o == 'clear' for _, o, _ in total)} | "
                f"{sum(o == 'handled' for _, o, _ in total)} | {sum(o == 'open' for _, o, _ in total)}")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def results(root):
    return run_all(root)


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_each_category_gives_its_own_clear_error_or_handles_the_input(results, category):
    found = results[category]
    still_open = [(name, detail) for name, o, detail in found if o == "open"]
    assert not still_open, f"{category}: {len(still_open)} of {len(found)} cases still open: {still_open}"
    assert len(found) >= EXPECTED_MINIMUM[category]


def test_no_pickle_ever_ran_code_and_the_payloads_are_real(results, root, tmp_path):
    assert results["unsafe"] and not list(root.rglob("pwned"))
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_payloads(marker)["os.system"]))  # control: an unsafe loader does run it
    assert marker.exists()


def test_the_three_checkpoint_failures_are_distinct_classes():
    kinds = {UnsafeCheckpointError, DamagedCheckpointError, WrongCheckpointError}
    assert all(issubclass(k, CheckpointError) and issubclass(k, ValueError) for k in kinds)
    assert len({k.category for k in kinds}) == 3 and not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)


if __name__ == "__main__":  # python tests/test_hardening.py: the table for the issue note
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        found = run_all(Path(tmp))
        print(table(found))
        for category, rows in found.items():
            for name, o, detail in rows:
                if o == "open":
                    print(f"OPEN {category}: {name}: {detail}")
        print(f"({time.perf_counter() - start:.1f} s)")
