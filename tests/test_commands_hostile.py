"""Hostile input for the commands train, bench, incontext and benchmark (issue 22), tried as an
operator and as a hostile user would: bad values, odd paths, broken --merge files and READMEs, a
full disk, Ctrl-C.

Each case runs `main([...])` in-process (a few run as real processes) and is classed by what
happened: "clear" (the expected exit code and one line `error: ...` that names the problem, no
traceback), "handled" (exit 0 and the check after it holds), or a failure: "traceback", "silent
wrong" (no error where one was due, or a wrong result), "data lost" (a file that had to survive
changed), "late check" (the work started before a check refused the input), "unclear" (another
exit code, several lines, a message that does not name the problem) or "hang". Work is guarded:
in a case that must be refused, the training or benchmark functions raise if they are reached.
`python tests/test_commands_hostile.py` prints the table: group | tried | outcome counts.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "benchmark_results.json"
IS_ROOT = os.geteuid() == 0
OUTCOMES = ("clear", "handled", "traceback", "silent wrong", "data lost", "late check", "unclear", "hang")


class WorkStarted(BaseException):
    """Raised by the guarded work functions: the command started working on refused input."""


@dataclass
class Case:
    group: str
    name: str
    argv: list[str]  # "{d}" is the case's own directory
    expect: str  # "usage" (exit 2), "error" (exit 1), "interrupt" (exit 130), "ok" (exit 0)
    match: str = ""  # what the one line must say (a regex)
    setup: Callable[[Path], None] | None = None
    patch: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    after: Callable[[Path], None] | None = None  # must hold afterwards (AssertionError: silent wrong)
    keep: tuple[str, ...] = ()  # files that must be byte for byte as before (else: data lost)


# ------------------------------------------------------------------------------------------------
# fakes and guards
# ------------------------------------------------------------------------------------------------

def _row(name, values):
    mean = sum(values) / len(values)
    return {"name": name, "reported": "9.4 ± 0.7", "returns": values, "std": {"mean": mean, "std": 1.0},
            "ci": {"mean": mean, "low": min(values), "high": max(values)}}


FAKE_SECTIONS = {
    "card": {"card": {"what": "tiny", "rows": [_row("random policy", [20.0, 22.0])]}},
    "strong": {"strong": {"what": "tiny", "rows": [{**_row("MAML, 1 step", [1.0, 3.0]), "adapted": True,
                                                    "env_steps": 2000}]}},
}


def fake_protocols(args, results, say):
    """The benchmark's work in a millisecond: tiny sections of the right shape."""
    for protocol in args.protocol:
        results.update(json.loads(json.dumps(FAKE_SECTIONS[protocol])))
        results["seconds"][protocol] = 0.0


def fake_in_context(model, config, progress=False):
    history = {"iteration": [0, 1], "env_steps": [10, 20], "seconds": [0.1, 0.2]}
    return SimpleNamespace(history=history, solved=False, solved_at_steps=None, solved_at_seconds=None,
                           skipped_updates=0, final_eval={}, validation={})


def guard(mp: pytest.MonkeyPatch) -> None:
    """Every function that does a command's work raises WorkStarted."""
    from ssm_metarl.adapt import in_context
    from ssm_metarl.bench import cli as bench_cli
    from ssm_metarl.bench import speed
    from ssm_metarl.meta import sine, training
    from ssm_metarl.protocol import gather

    def refuse(*args, **kwargs):
        raise WorkStarted

    for module, name in ((bench_cli, "run_protocols"), (training, "meta_train"), (sine, "train_sine"),
                         (in_context, "train_in_context"), (speed, "bench_ssm"), (speed, "bench_rl"),
                         (speed, "bench_rollout"), (speed, "bench_maml"), (gather, "run_study")):
        mp.setattr(module, name, refuse)


def fast_benchmark(mp, d):
    from ssm_metarl.bench import cli as bench_cli

    mp.setattr(bench_cli, "run_protocols", fake_protocols)


def fast_incontext(mp, d):
    from ssm_metarl.adapt import cli as adapt_cli
    from ssm_metarl.adapt import in_context

    mp.setattr(in_context, "train_in_context", fake_in_context)
    mp.setattr(adapt_cli, "in_context_evaluation", lambda model, family: {"protocol": "none"})


def fast_train(mp, d):
    """Sine training stays real (a few iterations); the CartPole trainer is not reached."""
    from ssm_metarl.meta import sine

    mp.setattr(sine, "train_sine", _real["train_sine"])


_real: dict = {}
_restore: list = []  # undo a chmod after the case


def full_disk(fragment: str, also: Callable | None = None):
    """A patch: fsync of a file whose name holds `fragment` fails with ENOSPC (what a full disk
    reports; the temporary files are named after their target)."""

    def patch(mp, d):
        real = os.fsync

        def fsync(fd):
            try:
                name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                name = ""
            if fragment in name:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd)

        mp.setattr(os, "fsync", fsync)
        if also:
            also(mp, d)

    return patch


def torch_full_disk(mp, d):
    """torch.save meets a full disk after 64 bytes (torch reports it as a RuntimeError)."""
    import torch

    real = torch.save

    class Full(io.RawIOBase):
        def __init__(self, f):
            self.f, self.n = f, 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            if self.n > 64:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

    mp.setattr(torch, "save", lambda obj, f, *a, **k: real(obj, Full(f), *a, **k))
    fast_train(mp, d)


def read_only(sub: str, then: Callable | None = None):
    """A patch: nothing can be created in d/sub (chmod 555 if we are not root, which ignores
    modes; as root, creating a file there fails with EACCES as it would)."""

    def patch(mp, d):
        target = str(d / sub)
        if not IS_ROOT:
            os.chmod(target, 0o555)
            _restore.append(lambda: os.chmod(target, 0o755))
        else:
            real = os.open
            tmpfile = getattr(os, "O_TMPFILE", 0)

            def guarded(path, flags, *args, **kwargs):
                where = os.path.abspath(path)
                creates = flags & os.O_CREAT and os.path.dirname(where) == target
                if creates or (tmpfile and flags & tmpfile == tmpfile and where == target):
                    raise PermissionError(errno.EACCES, "Permission denied", path)
                return real(path, flags, *args, **kwargs)

            mp.setattr(os, "open", guarded)
        if then:
            then(mp, d)

    return patch


def raising(where: str, name: str, exc: BaseException):
    """A patch: `where.name` raises `exc` when called."""

    def patch(mp, d):
        import importlib

        def boom(*args, **kwargs):
            raise exc

        mp.setattr(importlib.import_module(where), name, boom)

    return patch


def both(*patches):
    def patch(mp, d):
        for p in patches:
            p(mp, d)

    return patch


# ------------------------------------------------------------------------------------------------
# files the cases start from
# ------------------------------------------------------------------------------------------------

def _start():
    from ssm_metarl.bench.results import README_END, README_START

    return README_START, README_END


START, END = _start()
README_OK = f"# Title\n\nbefore\n{START}\nold numbers\n{END}\nafter\n"


def write(name: str, text: str | bytes):
    def setup(d):
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def setups(*fns):
    def setup(d):
        for fn in fns:
            fn(d)

    return setup


def mkdir(name):
    return lambda d: (d / name).mkdir(parents=True, exist_ok=True)


def symlink(name, target):
    return lambda d: os.symlink(target.format(d=d), d / name)


def fifo(name):
    return lambda d: os.mkfifo(d / name)


VALID = json.dumps({"command": "python -m ssm_metarl benchmark --protocol card --out x", "protocols": ["card"],
                    "seconds": {"total": 1.0}, **FAKE_SECTIONS["card"]})


def readme_rewritten(d, name="README.md"):
    text = (d / name).read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "markers not exactly once each"
    assert text.startswith("# Title\n\nbefore\n") and text.endswith("after\n"), "text outside the section changed"
    assert "old numbers" not in text and "| random policy |" in text, "section not rewritten"


def no_outputs(d, out="out"):
    assert not (d / out / "benchmark_results.json").exists(), "outputs written"


def no_temp_files(d):
    left = [p.name for p in Path(d).rglob("*.tmp")]
    assert not left, f"temporary files left: {left}"


def checks(*fns):
    def after(d):
        for fn in fns:
            fn(d)

    return after


# ------------------------------------------------------------------------------------------------
# the catalogue
# ------------------------------------------------------------------------------------------------

def _usage(group, name, argv, match, **kw):
    return Case(group, name, argv, "usage", match, **kw)


def argument_cases() -> list[Case]:
    g, out = "arguments: values, types, names", "{d}/m.pth"
    train = [("--epochs 0", ["--epochs", "0"], "--epochs must be a positive int"),
             ("--epochs 1e3", ["--epochs", "1e3"], "invalid int value"),
             ("--inner_lr nan", ["--inner_lr", "nan"], "--inner_lr must be a positive finite number"),
             ("--outer_lr inf", ["--outer_lr", "inf"], "--outer_lr must be a positive finite number"),
             ("--family nope", ["--family", "nope"], "unknown task family 'nope'"),
             ("--mode hybrid", ["--mode", "hybrid"], "invalid choice: 'hybrid'"),
             ("--test_tasks 0", ["--test_tasks", "0"], "--test_tasks must be a positive int"),
             ("--max_minutes -1", ["--max_minutes", "-1"], "--max_minutes must be a positive number"),
             ("--max_minutes nan", ["--max_minutes", "nan"], "--max_minutes must be a positive number"),
             ("--seed -3", ["--seed", "-3"], "--seed must be an int >= 0"),
             ("--threads -1", ["--threads", "-1"], "--threads must be a positive int"),
             ("sine with --epochs", ["--family", "sine", "--epochs", "5"], "--epochs do\\(es\\) not apply"),
             ("goal with --meta_batch", ["--family", "goal", "--meta_batch", "2"], "--meta_batch do\\(es\\) not"),
             ("unknown flag --epoch", ["--epoch", "3"], "unrecognized arguments: --epoch 3")]
    cases = [_usage(g, f"train {n}", ["train", *a, "--quiet", "--out", out], m) for n, a, m in train]
    cases.append(_usage(g, "train without --out", ["train", "--quiet"], "the following arguments are required: --out"))
    cases += [_usage(g, "bench nope", ["bench", "nope"], "unknown benchmark 'nope'; choose one of"),
              _usage(g, "bench ssm --seed -1", ["bench", "ssm", "--seed", "-1"], "--seed must be an int >= 0"),
              _usage(g, "bench ssm --seed x", ["bench", "ssm", "--seed", "x"], "invalid int value: 'x'"),
              _usage(g, "unknown command", ["trian"], "invalid choice: 'trian'")]
    incontext = [("--family goal (no flip)", ["--family", "goal"], "goal"),
                 ("--tasks_per_iter 3", ["--tasks_per_iter", "3"], "--tasks_per_iter must be even"),
                 ("--epochs 0", ["--epochs", "0"], "--epochs must be a positive int"),
                 ("--threads 0", ["--threads", "0"], "--threads must be a positive int"),
                 ("--keep newest", ["--keep", "newest"], "keep")]
    cases += [_usage(g, f"incontext {n}", ["incontext", *a, "--quiet", "--out", out], m) for n, a, m in incontext]
    replicate = [("--workers 0", ["--workers", "0"], "--workers must be a positive int"),
                 ("--workers two", ["--workers", "two"], "invalid int value: 'two'"),
                 ("--store results.pth", ["--store", "{d}/results.pth"], "--store must end in .json"),
                 ("--store a folder", ["--store", "{d}"], "--store"),
                 ("--root a file", ["--root", "{d}/file.json/x"], "--root")]
    cases += [_usage(g, f"replicate {n}", ["replicate", *a, "--root", "{d}/study"] if "--root" not in a
                     else ["replicate", *a], m, setup=lambda d: (d / "file.json").write_text("{}"))
              for n, a, m in replicate]
    bench = [("--protocol best", ["--protocol", "best"], "invalid choice: 'best'"),
             ("--protocol with no name", ["--protocol"], "expected at least one argument"),
             ("--seeds 0", ["--seeds", "0"], "--seeds must be a positive int"),
             ("--threads 0", ["--threads", "0"], "--threads must be a positive int"),
             ("--seeds 6 (5 trained models)", ["--seeds", "6"], "--seeds must be at most 5"),
             ("--seed -1", ["--seed", "-1"], "--seed must be an int >= 0"),
             ("--seeds 2.5", ["--seeds", "2.5"], "invalid int value: '2.5'")]
    cases += [_usage(g, f"benchmark {n}", ["benchmark", *a, "--out", "{d}/out"], m, after=no_outputs)
              for n, a, m in bench]
    cases.append(_usage(g, "benchmark without --out", ["benchmark"], "required: --out"))
    huge = str(2**70)
    cases += [_usage(g, f"{c} --seed 2**70", [*c.split(), "--seed", huge, "--quiet", "--out", o],
                     "--seed must be at most 4294967295")
              for c, o in (("train", out), ("train --family sine", out), ("incontext", out),
                           ("benchmark", "{d}/out"))]
    cases.append(_usage(g, "bench ssm --seed 2**70", ["bench", "ssm", "--seed", huge], "--seed must be at most"))
    cases += [
        _usage(g, "benchmark --peers_run missing", ["benchmark", "--protocol", "peers", "--peers_run",
                                                    "{d}/gone.json", "--out", "{d}/out"], "gone.json: does not exist"),
        _usage(g, "benchmark --peers_run not a peers run", ["benchmark", "--protocol", "peers", "--peers_run",
                                                            "{d}/p.json", "--out", "{d}/out"], "is not a peers run",
               setup=write("p.json", '{"runs": 3}')),
        _usage(g, "benchmark --protocol card card", ["benchmark", "--protocol", "card", "card", "--out", "{d}/out"],
               "--protocol names card twice"),
    ]
    cases.append(_usage(g, "benchmark --protocol strong without rliable", ["benchmark", "--protocol", "strong",
                                                                           "--out", "{d}/out"], "needs rliable",
                        patch=lambda mp, d: mp.setitem(sys.modules, "rliable", None)))
    return cases


def path_cases() -> list[Case]:
    g = "--out / --ship paths, symlinks"
    cases = [
        _usage(g, "train --out an existing directory", ["train", "--out", "{d}/adir.pth"], "adir.pth is a directory",
               setup=mkdir("adir.pth")),
        _usage(g, "train --out whose card is a directory", ["train", "--out", "{d}/c.pth"], "c.json is a directory",
               setup=mkdir("c.json")),
        _usage(g, "train --out whose resume file is a directory", ["train", "--out", "{d}/r.pth"],
               "r.resume.pth is a directory", setup=mkdir("r.resume.pth")),
        _usage(g, "train --out under a file", ["train", "--out", "{d}/f/m.pth"], "f is not a directory",
               setup=write("f", "x")),
        _usage(g, "train --out in a read-only dir", ["train", "--out", "{d}/ro/m.pth"], "cannot write in .*ro",
               setup=mkdir("ro"), patch=read_only("ro")),
        _usage(g, "train --out in /sys (real EACCES)", ["train", "--out", "/sys/ssm_hostile/m.pth"], "cannot write in /sys"),
        _usage(g, "train --out a symlink to a file", ["train", "--out", "{d}/link.pth"], "symbolic link",
               setup=setups(write("real.pth", "x"), symlink("link.pth", "{d}/real.pth")), keep=("real.pth",)),
        _usage(g, "train --out a dangling symlink", ["train", "--out", "{d}/dangle.pth"], "does not exist",
               setup=symlink("dangle.pth", "{d}/nowhere/x.pth")),
        _usage(g, "train --out ''", ["train", "--out", ""], "--out must end in .pth"),
        _usage(g, "train --out .pth", ["train", "--out", "{d}/.pth"], "--out must end in .pth"),
        _usage(g, "train --out a fifo", ["train", "--out", "{d}/p.pth"], "not a regular file", setup=fifo("p.pth")),
        _usage(g, "train --out with a NUL byte", ["train", "--out", "{d}/a\0b.pth"], "cannot hold a NUL byte"),
        _usage(g, "benchmark --out with a NUL byte", ["benchmark", "--out", "{d}/a\0b"], "cannot hold a NUL byte"),
        _usage(g, "train --out a 300-character name", ["train", "--out", "{d}/" + "x" * 300 + ".pth"],
               "file name too long"),
        Case(g, "a path with a line break in a failure: still one line", ["benchmark", "--quiet", "--out",
             "{d}/new\nline"], "error", r"^no space left on device: .*new\\nline/benchmark_results\.json$",
             patch=full_disk("benchmark_results.json", fast_benchmark)),
        _usage(g, "incontext --out a directory", ["incontext", "--out", "{d}/adir.pth"], "is a directory",
               setup=mkdir("adir.pth")),
        _usage(g, "incontext --out in a read-only dir", ["incontext", "--out", "{d}/ro/m.pth"], "cannot write in",
               setup=mkdir("ro"), patch=read_only("ro")),
        _usage(g, "incontext --out a dangling symlink", ["incontext", "--out", "{d}/dangle.pth"], "does not exist",
               setup=symlink("dangle.pth", "{d}/nowhere.pth")),
        _usage(g, "incontext --out model.pt", ["incontext", "--out", "{d}/m.pt"], "--out must end in .pth"),
        _usage(g, "benchmark --out an existing file", ["benchmark", "--out", "{d}/file"], "is a file, not a directory",
               setup=write("file", "keep me"), keep=("file",)),
        _usage(g, "benchmark --out a dangling symlink", ["benchmark", "--out", "{d}/dangle"], "does not exist",
               setup=symlink("dangle", "{d}/nowhere")),
        _usage(g, "benchmark --out whose plots is a file", ["benchmark", "--out", "{d}/out"],
               "plots is a file, but a folder goes there", setup=write("out/plots", "x")),
        _usage(g, "benchmark --out whose JSON is a directory", ["benchmark", "--out", "{d}/out"],
               "benchmark_results.json is a directory", setup=mkdir("out/benchmark_results.json")),
        _usage(g, "benchmark --out in a read-only dir", ["benchmark", "--out", "{d}/ro/out"], "cannot write in",
               setup=mkdir("ro"), patch=read_only("ro")),
        _usage(g, "benchmark --out in /proc (real)", ["benchmark", "--out", "/proc/ssm_hostile"], "cannot write in /proc"),
        _usage(g, "benchmark --out ''", ["benchmark", "--out", ""], "--out must name a directory"),
        _usage(g, "--ship into a missing folder", ["benchmark", "--out", "{d}/out", "--ship", "{d}/no/such/r.json"],
               "does not exist; create it"),
        _usage(g, "--ship a directory", ["benchmark", "--out", "{d}/out", "--ship", "{d}/adir"], "is a directory",
               setup=mkdir("adir")),
        _usage(g, "--ship a dangling symlink", ["benchmark", "--out", "{d}/out", "--ship", "{d}/dangle.json"],
               "does not exist", setup=symlink("dangle.json", "{d}/gone/r.json")),
        _usage(g, "--ship in a read-only dir", ["benchmark", "--out", "{d}/out", "--ship", "{d}/ro/r.json"],
               "cannot write in", setup=mkdir("ro"), patch=read_only("ro")),
        _usage(g, "--ship a fifo", ["benchmark", "--out", "{d}/out", "--ship", "{d}/pipe"], "not a regular file",
               setup=fifo("pipe")),
        _usage(g, "--ship ''", ["benchmark", "--out", "{d}/out", "--ship", ""], "--ship must name a file"),
        Case(g, "--ship a symlink to a file: the file is replaced, the link stays",
             ["benchmark", "--quiet", "--out", "{d}/out", "--ship", "{d}/link.json"], "ok",
             setup=setups(write("real.json", "{}"), symlink("link.json", "{d}/real.json")), patch=fast_benchmark,
             after=lambda d: (_assert((d / "link.json").is_symlink(), "the link was replaced"),
                              _assert("card" in json.loads((d / "real.json").read_text()), "target not written"))),
        Case(g, "benchmark --out a symlink to a folder", ["benchmark", "--quiet", "--out", "{d}/outlink"], "ok",
             setup=setups(mkdir("realout"), symlink("outlink", "{d}/realout")), patch=fast_benchmark,
             after=lambda d: _assert((d / "realout" / "benchmark_results.json").is_file(), "not written")),
        Case(g, "benchmark --out a new nested folder", ["benchmark", "--quiet", "--out", "{d}/a/b/c"], "ok",
             patch=fast_benchmark,
             after=lambda d: _assert((d / "a/b/c/plots/adaptation_comparison.png").is_file(), "not written")),
    ]
    return cases


def _assert(condition, message):
    assert condition, message


def merge_cases() -> list[Case]:
    g = "benchmark --merge"
    run = ["benchmark", "--quiet", "--out", "{d}/out", "--merge"]
    bad = [
        ("a missing file", "{d}/missing.json", None, "missing.json: does not exist"),
        ("a directory", "{d}/adir", mkdir("adir"), "adir is a directory"),
        ("an empty file", "{d}/e.json", write("e.json", ""), "e.json is empty"),
        ("whitespace only", "{d}/w.json", write("w.json", " \n\t\n"), "w.json is empty"),
        ("not JSON", "{d}/n.json", write("n.json", "card: 1\n"), "n.json is not valid JSON"),
        ("truncated JSON", "{d}/t.json", write("t.json", VALID[: len(VALID) // 2]), "t.json is not valid JSON"),
        ("not UTF-8", "{d}/b.json", write("b.json", b"\xff\xfe{\x00}"), "b.json is not UTF-8 text"),
        ("a JSON array", "{d}/l.json", write("l.json", "[1, 2]"), "holds a JSON array, not a benchmark object"),
        ("JSON null", "{d}/z.json", write("z.json", "null"), "holds a JSON null"),
        ("an object with no section", "{d}/o.json", write("o.json", '{"command": "x"}'), "has none of the sections"),
        ("a section that is a list", "{d}/s.json", write("s.json", '{"card": []}'), "'card' is not a JSON object"),
        ("a section without rows", "{d}/r.json", write("r.json", '{"card": {"what": "x"}}'),
         "do not have the benchmark's shape"),
        ("rows of the wrong type", "{d}/r2.json", write("r2.json", '{"card": {"what": "x", "rows": [{"name": 1}]}}'),
         "do not have the benchmark's shape"),
        ("a CI that is a string", "{d}/c.json",
         write("c.json", VALID.replace('"low": 20.0', '"low": "twenty"')), "do not have the benchmark's shape"),
        ("'merged' that is a list", "{d}/m.json", write("m.json", VALID[:-1] + ', "merged": [1]}'),
         "'merged' is not a JSON object"),
        ("'merged' runs that are numbers", "{d}/m2.json", write("m2.json", VALID[:-1] + ', "merged": {"a": 1}}'),
         "'merged' runs are not JSON objects"),
        ("'protocols' a string", "{d}/p.json", write("p.json", VALID.replace('["card"]', '"card"')),
         "'protocols' is not a JSON array"),
        ("'seconds' a number", "{d}/sec.json", write("sec.json", VALID.replace('{"total": 1.0}', "3")),
         "'seconds' is not a JSON object"),
        ("holding the README end marker", "{d}/end.json",
         write("end.json", VALID.replace('"tiny"', json.dumps("tiny " + END))), "holds a README benchmark marker"),
        ("holding the README start marker", "{d}/start.json",
         write("start.json", VALID.replace('"tiny"', json.dumps(START))), "holds a README benchmark marker"),
        ("the README itself", "{d}/README.md", write("README.md", README_OK), "holds a README benchmark marker"),
        ("nested 100000 deep", "{d}/deep.json", write("deep.json", "[" * 100_000 + "]" * 100_000),
         "nested too deeply|holds a JSON array"),
        ("peers whose CartPole rows lack their seeds", "{d}/pe.json",
         write("pe.json", json.dumps({"peers": {"card": {}, "cartpole": [{"label": "SB3 PPO", "solved": 1}]}})),
         "do not have the benchmark's shape"),
        ("a dangling symlink", "{d}/dl.json", symlink("dl.json", "{d}/gone.json"), "dangling symbolic link"),
        ("''", "", None, "--merge must name a file, got ''"),
        ("a fifo (reading it would block)", "{d}/fifo.json", fifo("fifo.json"), "is not a regular file"),
        ("with a NUL byte", "{d}/a\0.json", None, "cannot hold a NUL byte"),
    ]
    cases = [_usage(g, f"--merge {n}", ["benchmark", "--out", "{d}/out", "--readme", "{d}/RM.md", "--merge", p], m,
                    setup=setups(s, write("RM.md", README_OK)) if s else write("RM.md", README_OK), keep=("RM.md",),
                    after=no_outputs)
             for n, p, s, m in bad]
    cases.append(_usage(g, "--merge a good file and a missing one", [*run, "{d}/v.json", "{d}/missing.json"],
                        "missing.json: does not exist", setup=write("v.json", VALID)))
    cases.append(Case(g, "--merge a valid earlier run keeps its section", ["benchmark", "--quiet", "--protocol",
                      "strong", "--out", "{d}/out", "--merge", "{d}/v.json"], "ok", setup=write("v.json", VALID),
                      patch=fast_benchmark, after=lambda d: _merged(d, {"card", "strong"})))
    if SHIPPED.exists():
        cases.append(Case(g, "--merge the shipped JSON, --readme rewritten once", [
            "benchmark", "--quiet", "--protocol", "card", "--out", "{d}/out", "--merge", str(SHIPPED),
            "--readme", "{d}/README.md"], "ok", setup=write("README.md", README_OK), patch=fast_benchmark,
            after=lambda d: (_merged(d, {"card", "strong", "peers", "speed"}),
                             readme_rewritten(d))))
    return cases


def _merged(d, sections):
    results = json.loads((d / "out" / "benchmark_results.json").read_text())
    assert sections <= set(results), f"sections {sorted(sections - set(results))} lost"
    assert results["merged"], "the earlier run is not listed under 'merged'"


def readme_cases() -> list[Case]:
    g = "benchmark --readme"
    run = ["benchmark", "--quiet", "--out", "{d}/out", "--readme", "{d}/README.md"]
    bad = [
        ("missing", None, "README.md: does not exist"),
        ("without markers", "# Title\n\nno section\n", "has no benchmark section"),
        ("with only the start marker", f"# T\n{START}\nold\n", "has no benchmark section"),
        ("with only the end marker", f"# T\nold\n{END}\n", "has no benchmark section"),
        ("with reversed markers", f"# T\n{END}\nold\n{START}\n", "end marker comes before the start marker"),
        ("with two start markers", f"# T\n{START}\n{START}\nold\n{END}\n", "2 benchmark start and 1 end markers"),
        ("with two end markers", f"# T\n{START}\nold\n{END}\n{END}\n", "1 benchmark start and 2 end markers"),
        ("with two sections", f"{START}\na\n{END}\n{START}\nb\n{END}\n", "2 benchmark start and 2 end markers"),
        ("with a third, hand-made marker", f"{START}\n<!-- benchmark:middle -->\n{END}\n", "keep exactly one"),
        ("not UTF-8", b"\xff\xfe" + README_OK.encode("utf-16-le"), "is not UTF-8 text"),
    ]
    cases = [_usage(g, f"--readme {n}", run, m, setup=write("README.md", t) if t is not None else None,
                    keep=("README.md",) if t is not None else (), after=no_outputs) for n, t, m in bad]
    cases += [
        _usage(g, "--readme a directory", run, "README.md is a directory", setup=mkdir("README.md")),
        _usage(g, "--readme a fifo (reading it would block)", run, "is not a regular file", setup=fifo("README.md")),
        _usage(g, "--readme a dangling symlink", run, "dangling symbolic link",
               setup=symlink("README.md", "{d}/gone.md")),
        _usage(g, "--readme in a read-only dir", ["benchmark", "--out", "{d}/out", "--readme", "{d}/ro/README.md"],
               "cannot write in", setup=setups(mkdir("ro"), write("ro/README.md", README_OK)), patch=read_only("ro"),
               keep=("ro/README.md",)),
        _usage(g, "--readme with a marker on the command line",
               ["benchmark", "--out", "{d}/" + END, "--readme", "{d}/README.md"],
               "the command line holds", setup=write("README.md", README_OK), keep=("README.md",)),
        _usage(g, "--ship and --readme the same file", [*run, "--ship", "{d}/README.md"], "name the same file",
               setup=write("README.md", README_OK), keep=("README.md",)),
        Case(g, "--readme a good README: section rewritten, markers once", run, "ok",
             setup=write("README.md", README_OK), patch=fast_benchmark, after=readme_rewritten),
        Case(g, "--readme twice: the same text, markers once", run, "ok", setup=write("README.md", README_OK),
             patch=both(fast_benchmark, lambda mp, d: _twice(d)), after=readme_rewritten),
        Case(g, "--readme through a symlink: the file is rewritten, the link stays", [*run[:-1], "{d}/link.md"], "ok",
             setup=setups(write("README.md", README_OK), symlink("link.md", "{d}/README.md")), patch=fast_benchmark,
             after=lambda d: (readme_rewritten(d), _assert((d / "link.md").is_symlink(), "link replaced"))),
        Case(g, "--readme with CRLF line ends", run, "ok", setup=write("README.md", README_OK.replace("\n", "\r\n")),
             patch=fast_benchmark,
             after=lambda d: _assert((d / "README.md").read_bytes().count(END.encode()) == 1, "marker count")),
    ]
    return cases


def _twice(d):
    """Run the README update once before the case's own run (the second must change nothing else)."""
    from ssm_metarl.bench.results import update_readme

    update_readme(d / "README.md", {"command": "earlier", **FAKE_SECTIONS["card"]})


def disk_cases() -> list[Case]:
    g = "disk full, write failures"
    run = ["benchmark", "--quiet", "--out", "{d}/out", "--readme", "{d}/README.md", "--ship", "{d}/ship.json"]
    old = setups(write("README.md", README_OK), write("ship.json", "{\"old\": 1}\n"),
                 write("out/benchmark_results.json", "{\"old\": 2}\n"))
    keep = ("README.md", "ship.json", "out/benchmark_results.json")
    return [
        Case(g, "benchmark: disk full writing the JSON", run, "error",
             r"^no space left on device: .*out/benchmark_results\.json$", setup=old,
             patch=full_disk("benchmark_results.json", fast_benchmark), keep=keep, after=no_temp_files),
        Case(g, "benchmark: disk full writing a plot", run, "error", r"^no space left on device: .*\.png$",
             setup=old, patch=full_disk(".png", fast_benchmark), keep=("README.md", "ship.json"),
             after=no_temp_files),
        Case(g, "benchmark: disk full writing --ship", run, "error", r"^no space left on device: .*ship\.json$",
             setup=old, patch=full_disk("ship.json", fast_benchmark), keep=("README.md", "ship.json"),
             after=no_temp_files),
        Case(g, "benchmark: disk full writing README", run, "error", r"^no space left on device: .*README\.md$",
             setup=old, patch=full_disk("README.md", fast_benchmark), keep=("README.md",), after=no_temp_files),
        Case(g, "benchmark: folder made read-only during the run", run, "error",
             r"^permission denied: .*out", setup=setups(old, mkdir("out")),
             patch=both(fast_benchmark, _read_only_during_work("out")), keep=keep, after=no_temp_files),
        Case(g, "train (sine): torch.save meets a full disk", ["train", "--family", "sine", "--iterations", "2",
             "--meta_batch", "2", "--hidden_dim", "4", "--test_tasks", "2", "--quiet", "--out", "{d}/s.pth"],
             "error", r"^no space left on device: .*s\.pth$", patch=torch_full_disk,
             after=checks(no_temp_files, lambda d: _assert(not (d / "s.pth").exists(), "half model written"))),
        Case(g, "train (sine): the card's fsync meets a full disk", ["train", "--family", "sine", "--iterations",
             "2", "--meta_batch", "2", "--hidden_dim", "4", "--test_tasks", "2", "--quiet", "--out", "{d}/s.pth"],
             "error", r"^no space left on device: .*s\.(pth|json)$", setup=write("s.pth", "old weights"),
             patch=full_disk("s.", fast_train), keep=("s.pth",), after=no_temp_files),
        Case(g, "incontext: disk full writing the model", ["incontext", "--quiet", "--out", "{d}/ic.pth"], "error",
             r"^no space left on device: .*ic\.(pth|json)$", patch=full_disk("ic.", fast_incontext),
             after=checks(no_temp_files, lambda d: _assert(not (d / "ic.pth").exists(), "half model"))),
    ]


def _read_only_during_work(sub):
    """The output folder turns read-only once the work has started (a write after it fails)."""

    def patch(mp, d):
        from ssm_metarl.bench import cli as bench_cli

        def run(args, results, say):
            fake_protocols(args, results, say)
            read_only(sub)(mp, d)

        mp.setattr(bench_cli, "run_protocols", run)

    return patch


def interrupt_cases() -> list[Case]:
    g = "Ctrl-C"
    ctrl_c = KeyboardInterrupt()
    return [
        Case(g, "benchmark: Ctrl-C while the protocols run", ["benchmark", "--quiet", "--out", "{d}/out", "--readme",
             "{d}/README.md"], "interrupt", "^interrupted: benchmark stopped",
             setup=write("README.md", README_OK), patch=raising("ssm_metarl.bench.cli", "run_protocols", ctrl_c),
             keep=("README.md",), after=no_outputs),
        Case(g, "benchmark: Ctrl-C while --merge is read", ["benchmark", "--out", "{d}/out", "--merge", "{d}/v.json"],
             "interrupt", "^interrupted", setup=write("v.json", VALID),
             patch=raising("ssm_metarl.io.paths", "read_user_json", ctrl_c), after=no_outputs),
        Case(g, "benchmark: Ctrl-C while writing README", ["benchmark", "--quiet", "--out", "{d}/out", "--readme",
             "{d}/README.md"], "interrupt", "^interrupted", setup=write("README.md", README_OK),
             patch=both(fast_benchmark, raising("ssm_metarl.bench.results", "readme_with_results", ctrl_c)),
             keep=("README.md",), after=no_temp_files),
        Case(g, "train (sine): Ctrl-C", ["train", "--family", "sine", "--quiet", "--out", "{d}/s.pth"], "interrupt",
             "^interrupted: sine training keeps no resume file", patch=raising("ssm_metarl.meta.sine", "train_sine",
                                                                               ctrl_c)),
        Case(g, "train (goal): Ctrl-C before the first validation", ["train", "--quiet", "--out", "{d}/g.pth"],
             "interrupt", "^interrupted before the first validation",
             patch=raising("ssm_metarl.meta.training", "meta_train", ctrl_c)),
        Case(g, "incontext: Ctrl-C", ["incontext", "--quiet", "--out", "{d}/ic.pth"], "interrupt",
             "^interrupted: incontext stopped",
             patch=raising("ssm_metarl.adapt.in_context", "train_in_context", ctrl_c)),
        Case(g, "bench ssm: Ctrl-C", ["bench", "ssm"], "interrupt", "^interrupted: bench stopped",
             patch=raising("ssm_metarl.bench.speed", "bench_ssm", ctrl_c)),
    ]


def failure_cases() -> list[Case]:
    from ssm_metarl.io.checkpoint import DamagedCheckpointError

    g = "failures during the work"
    run = ["benchmark", "--quiet", "--out", "{d}/out"]
    return [
        Case(g, "a damaged shipped checkpoint", run, "error", "^m.pth: truncated$",
             patch=raising("ssm_metarl.bench.cli", "run_protocols", DamagedCheckpointError("m.pth: truncated"))),
        Case(g, "a shipped file missing", run, "error", "^no such file or directory: models/x.pth$",
             patch=raising("ssm_metarl.bench.cli", "run_protocols",
                           FileNotFoundError(errno.ENOENT, "No such file or directory", "models/x.pth"))),
        Case(g, "an optional package missing mid-run", run, "error", r"optuna.*pip install 'ssm-metarl\[rsi\]'",
             patch=raising("ssm_metarl.bench.cli", "run_protocols",
                           ModuleNotFoundError("No module named 'optuna'", name="optuna"))),
        Case(g, "a user's JSON card that does not parse", run, "error", "not valid JSON",
             patch=raising("ssm_metarl.bench.cli", "run_protocols", json.JSONDecodeError("Expecting value", "x", 0))),
        Case(g, "a value error with a multi-line message", run, "error", "^first line second line$",
             patch=raising("ssm_metarl.bench.cli", "run_protocols", ValueError("first line\nsecond line"))),
        Case(g, "a bug (RuntimeError) keeps its traceback", run, "bug", "RuntimeError",
             patch=raising("ssm_metarl.bench.cli", "run_protocols", RuntimeError("a bug"))),
        Case(g, "a figure failing after the work (a bug): the measured JSON is kept", run, "bug", "RuntimeError",
             patch=both(fast_benchmark, raising("ssm_metarl.bench.plots", "plot_adaptation",
                                                RuntimeError("a plotting bug"))),
             after=lambda d: _assert("card" in json.loads((d / "out/benchmark_results.json").read_text()),
                                     "the run's results were lost")),
        Case(g, "SSM_METARL_DEBUG=1 shows the traceback of a known failure", run, "bug", "FileNotFoundError",
             patch=both(raising("ssm_metarl.bench.cli", "run_protocols", FileNotFoundError(2, "gone", "x")),
                        lambda mp, d: mp.setenv("SSM_METARL_DEBUG", "1"))),
        Case(g, "a handled run: train --family sine, tiny", ["train", "--family", "sine", "--iterations", "2",
             "--meta_batch", "2", "--hidden_dim", "4", "--test_tasks", "2", "--quiet", "--out", "{d}/s.pth"], "ok",
             patch=fast_train, after=lambda d: _assert((d / "s.json").is_file(), "no card")),
        Case(g, "a handled run: incontext, tiny", ["incontext", "--quiet", "--out", "{d}/new/ic.pth"], "ok",
             patch=fast_incontext, after=lambda d: _assert((d / "new" / "ic.json").is_file(), "no card")),
    ]


def catalogue() -> list[Case]:
    return argument_cases() + path_cases() + merge_cases() + readme_cases() + disk_cases() + interrupt_cases() + \
        failure_cases()


# ------------------------------------------------------------------------------------------------
# running a case
# ------------------------------------------------------------------------------------------------

def _snapshot(path: Path):
    return path.read_bytes() if path.is_file() else None


def run_case(case: Case, base: Path) -> tuple[str, str]:
    """(outcome, detail) of one case, in a fresh directory."""
    from ssm_metarl.cli import main

    d = Path(tempfile.mkdtemp(dir=base))
    if case.setup:
        case.setup(d)
    before = {name: _snapshot(d / name) for name in case.keep}
    argv = [a.format(d=d) for a in case.argv]
    mp = pytest.MonkeyPatch()
    err, out = io.StringIO(), io.StringIO()
    escaped = None
    try:
        guard(mp)
        if case.patch:
            case.patch(mp, d)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            except WorkStarted:
                return "late check", "the work started before the input was refused"
            except Exception as exc:  # noqa: BLE001
                escaped, code = exc, None
    finally:
        mp.undo()
        while _restore:
            _restore.pop()()
    text = err.getvalue()
    lost = [name for name, data in before.items() if _snapshot(d / name) != data]
    if lost:
        return "data lost", f"changed: {lost}"
    if case.expect == "bug":
        name = type(escaped).__name__ if escaped else ""
        if not re.search(case.match, name):
            return "unclear", f"exit {code}: {text[-200:]!r}"
        try:
            if case.after:
                case.after(d)
        except AssertionError as exc:
            return "data lost", f"after: {exc}"
        return "handled", ""
    if escaped is not None or "Traceback" in text:
        return "traceback", f"{type(escaped).__name__}: {escaped}" if escaped else text[-300:]
    want = {"usage": 2, "error": 1, "interrupt": 130, "ok": 0}[case.expect]
    if code != want:
        kind = "silent wrong" if code == 0 else "unclear"
        return kind, f"exit {code} (wanted {want}): {text[-300:]!r}"
    if case.expect in ("usage", "error", "interrupt"):
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
        if len(lines) != 1:
            return "unclear", f"{len(lines)} lines: {text[-300:]!r}"
        message = lines[0].split("error: ", 1)[1] if "error: " in lines[0] else lines[0]
        if case.expect != "interrupt" and "error: " not in lines[0]:
            return "unclear", f"no 'error:' line: {lines[0]!r}"
        if not re.search(case.match, message):
            return "unclear", f"message does not match {case.match!r}: {message!r}"
    if case.after:
        try:
            case.after(d)
        except AssertionError as exc:
            return "silent wrong", f"after: {exc}"
    return ("handled" if case.expect == "ok" else "clear"), ""


def run_all(base: Path, cases: list[Case] | None = None) -> list[tuple[Case, str, str]]:
    from ssm_metarl.meta import sine

    _real.setdefault("train_sine", sine.train_sine)
    rows = []
    for case in cases or catalogue():
        start = time.perf_counter()
        rows.append((case, *run_case(case, base)))
        _seconds[case.name] = time.perf_counter() - start
    return rows


_seconds: dict = {}


# ------------------------------------------------------------------------------------------------
# real processes: startup, signals, the debug switch
# ------------------------------------------------------------------------------------------------

def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def process_cases(base: Path) -> list[tuple[Case, str, str]]:
    """Two real processes at once: a missing --merge refused before any work, and Ctrl-C (SIGINT)
    during training."""
    g = "real processes"
    cmd = [sys.executable, "-m", "ssm_metarl"]
    readme = base / "README.md"
    readme.write_text(README_OK)
    started = time.perf_counter()
    merge = subprocess.Popen([*cmd, "benchmark", "--protocol", "card", "--out", str(base / "out"), "--readme",
                              str(readme), "--merge", str(base / "missing.json")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env(), cwd=base)
    train = subprocess.Popen([*cmd, "train", "--family", "sine", "--iterations", "1000000", "--out",
                              str(base / "s.pth")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                             cwd=base)
    results = []

    def finish(proc, timeout):
        try:
            out, err = proc.communicate(timeout=timeout)
            return proc.returncode, err if isinstance(err, str) else err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, ""

    code, err = finish(merge, 60)
    seconds = time.perf_counter() - started
    case = Case(g, "benchmark --merge missing.json: refused before any work", [], "usage")
    if code is None:
        results.append((case, "hang", "over 60 s"))
    elif code == 2 and "missing.json: does not exist" in err and "Traceback" not in err and seconds < 30 \
            and not (base / "out").exists() and readme.read_text() == README_OK:
        results.append((case, "clear", f"{seconds:.1f} s"))
    else:
        results.append((case, "late check" if (base / "out").exists() else "unclear", f"exit {code}: {err[-300:]}"))
    # Ctrl-C once the sine training has started (its progress bar is on stderr)
    case = Case(g, "train: SIGINT during training", [], "interrupt")
    deadline, first = time.monotonic() + 60, b""
    os.set_blocking(train.stderr.fileno(), False)
    while time.monotonic() < deadline and b"it/s" not in first and b"it]" not in first and train.poll() is None:
        time.sleep(0.2)
        first += train.stderr.read() or b""
    train.send_signal(signal.SIGINT)
    os.set_blocking(train.stderr.fileno(), True)
    code, err = finish(train, 30)
    err = first.decode(errors="replace") + err
    last = [line for line in re.split(r"[\r\n]", err) if line.strip()][-1:] or [""]
    if code is None:
        results.append((case, "hang", "no exit 30 s after SIGINT"))
    elif code == 130 and "Traceback" not in err and last[0].startswith("interrupted: sine training"):
        results.append((case, "clear", last[0]))
    else:
        results.append((case, "traceback" if "Traceback" in err else "unclear", f"exit {code}: {err[-300:]}"))
    return results


# ------------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------------

def run_everything(base: Path) -> tuple[list, list]:
    """The in-process catalogue, with the real processes running beside it in a thread."""
    import threading

    real = []
    (base / "proc").mkdir()
    thread = threading.Thread(target=lambda: real.extend(process_cases(base / "proc")))
    thread.start()
    try:
        return run_all(base), real
    finally:
        thread.join()


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    return run_everything(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def results(everything):
    return everything[0]


GROUPS = sorted({case.group for case in catalogue()})


@pytest.mark.parametrize("group", GROUPS)
def test_every_case_ends_in_one_clear_line_or_is_handled(results, group):
    bad = [f"{case.name}: {outcome} ({detail})" for case, outcome, detail in results
           if case.group == group and outcome not in ("clear", "handled")]
    assert not bad, "\n".join(bad)


def test_the_catalogue_is_large_and_every_name_unique(results):
    names = [case.name for case, _, _ in results]
    assert len(names) >= 60 and len(set(names)) == len(names)


def test_real_processes_refuse_before_work_and_stop_on_sigint(everything):
    bad = [f"{case.name}: {outcome} ({detail})" for case, outcome, detail in everything[1]
           if outcome not in ("clear", "handled")]
    assert not bad, "\n".join(bad)


def test_the_classifier_fails_a_case_that_is_not_refused_late_refused_or_loses_data(tmp_path):
    """Every case can fail: planted mistakes are classed as failures, not as clear errors."""
    from ssm_metarl.bench import cli as bench_cli

    def clobber(mp, d):
        def run(args, results, say):
            (d / "README.md").write_text("clobbered")
            fake_protocols(args, results, say)

        mp.setattr(bench_cli, "run_protocols", run)

    planted = [
        (Case("t", "valid input expected to be refused", ["benchmark", "--quiet", "--out", "{d}/o"], "usage",
              patch=fast_benchmark), "silent wrong"),
        (Case("t", "refused input reaching the work", ["benchmark", "--out", "{d}/o"], "usage"), "late check"),
        (Case("t", "a message that does not name the problem", ["bench", "nope"], "usage", "something else"),
         "unclear"),
        (Case("t", "a file that had to survive", ["benchmark", "--quiet", "--out", "{d}/o"], "ok",
              setup=write("README.md", "x"), patch=clobber, keep=("README.md",)), "data lost"),
        (Case("t", "an escaping exception", ["benchmark", "--quiet", "--out", "{d}/o"], "error",
              patch=raising("ssm_metarl.bench.cli", "run_protocols", RuntimeError("bug"))), "traceback"),
        (Case("t", "an after-check that fails", ["benchmark", "--quiet", "--out", "{d}/o"], "ok",
              patch=fast_benchmark, after=lambda d: _assert(False, "planted")), "silent wrong"),
    ]
    got = [outcome for case, outcome, _ in run_all(tmp_path, [case for case, _ in planted])]
    assert got == [want for _, want in planted]


def test_the_readme_end_marker_is_never_written_twice_even_past_the_checks(tmp_path):
    """Results that hold a marker (here: in a section's text) are refused by update_readme itself,
    and the README stays as it was."""
    from ssm_metarl.bench.results import update_readme

    readme = tmp_path / "README.md"
    readme.write_text(README_OK)
    for text in (END, START, "<!-- benchmark:end"):
        hostile = json.loads(json.dumps(FAKE_SECTIONS["card"]).replace('"tiny"', json.dumps(text)))
        with pytest.raises(ValueError, match="README marker"):
            update_readme(readme, {"command": "x", **hostile})
        with pytest.raises(ValueError, match="README marker"):
            update_readme(readme, {"command": f"python -m ssm_metarl benchmark --out '{text}'", **FAKE_SECTIONS["card"]})
        assert readme.read_text() == README_OK


def table(rows) -> str:
    groups = {}
    for case, outcome, _ in rows:
        groups.setdefault(case.group, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
    head = "| group | tried | " + " | ".join(OUTCOMES) + " |"
    lines = [head, "|" + "---|" * (len(OUTCOMES) + 2)]
    total = dict.fromkeys(OUTCOMES, 0)
    for group, counts in groups.items():
        lines.append(f"| {group} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
        for o in OUTCOMES:
            total[o] += counts[o]
    lines.append(f"| **total** | **{sum(total.values())}** | " + " | ".join(f"**{total[o]}**" for o in OUTCOMES)
                 + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as base:
        rows = sum(run_everything(Path(base)), [])
    print(table(rows))
    slow = sorted(_seconds.items(), key=lambda kv: -kv[1])[:8]
    print("slowest:", ", ".join(f"{name} {t:.2f} s" for name, t in slow), f"; all {sum(_seconds.values()):.1f} s")
    for case, outcome, detail in rows:
        if outcome not in ("clear", "handled"):
            print(f"- {case.group} / {case.name}: {outcome}: {detail}")
