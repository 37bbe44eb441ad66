"""Command line of chapter 5's measurements around the loop: ``rsi-gate`` (how often
each acceptance test is fooled, and its power) and ``rsi-baseline`` (the same compute
spent on plain training). Both ship a JSON card with the command and its wall time.
Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from pathlib import Path

__all__ = ["add_parsers", "cmd_rsi_gate", "cmd_rsi_baseline", "GATE_MODELS"]

#: The models whose noise the gate study measures: the climbing run's weak start and
#: chapter 3's fully trained model, each at the step size it was trained with.
GATE_MODELS = ("cartpole_goal_maml_15_epochs", "cartpole_goal_maml")
#: Known gains added to the second model of a pair, in return points (0: no gain).
GATE_GAINS = (0.0, 2.5, 5.0, 10.0, 15.0, 20.0)
#: Seeds of the gate study's scores, far from the loop's cycle seeds.
GATE_SEED = 100_000


def _header(args, command: str) -> dict:
    import torch

    return {
        "command": "python -m ssm_metarl "
        + " ".join(shlex.quote(a) for a in args.argv),
        "created_by": f"ssm_metarl.cli {command}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def gate_unit(name: str, repeats: int, gains, alpha: float) -> dict:
    """Score one model `repeats` times and measure every test on its pairs, and the
    loop's own `decide` on its triples (one process's share of ``rsi-gate``)."""
    import torch

    from ..io.artifacts import artifact_path, load_card
    from ..models.ssm import StateSpaceModel
    from .gate_study import acceptance_rates, loop_gate_rate, repeated_scores
    from .search import Candidate, RSIConfig

    torch.set_num_threads(1)
    start, config = time.perf_counter(), RSIConfig()
    lr = float(load_card(name)["adaptation_lr"])
    model = StateSpaceModel.load(artifact_path(name + ".pth"))
    scores = repeated_scores(Candidate(model, lr), config, repeats, GATE_SEED)
    rates = acceptance_rates(scores, gains, alpha)
    return {
        "inner_lr": lr,
        "scores": [[round(float(v), 4) for v in row] for row in scores],
        "rates": {
            gate: {f"{g:g}": est.to_dict() for g, est in by_gain.items()}
            for gate, by_gain in rates.items()
        },
        "loop_gate": loop_gate_rate(scores, config).to_dict(),
        "seconds": time.perf_counter() - start,
    }


def cmd_rsi_gate(args: argparse.Namespace) -> int:
    """Measure every acceptance test on pairs of identical models; write the study's
    JSON (chapter 5)."""
    from ..io.atomic import save_json
    from ..protocol.runner import in_processes
    from .search import RSIConfig

    start, config = time.perf_counter(), RSIConfig()
    alpha = (1 - config.confidence) / 2
    calls = [(gate_unit, m, args.repeats, GATE_GAINS, alpha) for m in GATE_MODELS]
    units = in_processes(calls, args.workers)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_json(
        args.out,
        {
            **_header(args, "rsi-gate"),
            "what": "each model scored REPEATS times on the loop's validation tasks; "
            "disjoint pairs (rows 2i, 2i+1) for the tests, triples for decide",
            "config": config.to_dict(),
            "alpha": alpha,
            "gains": list(GATE_GAINS),
            "seed": GATE_SEED,
            "repeats": args.repeats,
            "models": dict(zip(GATE_MODELS, units)),
            "wall_seconds": time.perf_counter() - start,
        },
    )
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_rsi_baseline(args: argparse.Namespace) -> int:
    """Train the same-compute baseline of a shipped run; write its model and card
    (chapter 5)."""
    import torch

    from .baseline import same_compute_baseline
    from .checks import ship_path

    torch.set_num_threads(1)
    start = time.perf_counter()
    run = json.loads(Path(args.run).read_text())
    trained, measured = same_compute_baseline(run, args.seed)
    out = ship_path(args.ship)
    card = {
        "name": out.stem,
        **_header(args, "rsi-baseline"),
        "kind": "StateSpaceModel",
        "model_config": trained.model.config.__dict__,
        "parameters": sum(p.numel() for p in trained.model.parameters()),
        "adaptation_lr": trained.inner_lr,
        "matches_run": run["name"],
        "run_wall_seconds": run["wall_seconds"],
        "initial_model": run["initial_model"],
        "seed": args.seed,
        **measured,
        "wall_seconds": time.perf_counter() - start,
    }
    trained.model.save(out, extra={"inner_lr": trained.inner_lr}, card=card)
    print(
        f"wrote {out}: {measured['train']['env_steps']:,} env steps in "
        f"{measured['train']['seconds']:.0f} s, test {measured['test']['mean']:.1f}"
    )
    return 0


def check_gate(args: argparse.Namespace) -> None:
    """Every ``rsi-gate`` flag checked before any work (chapter 5)."""
    from ..io.validation import check_int

    check_int("--repeats", args.repeats, minimum=6)
    check_int("--workers", args.workers, minimum=1)
    if not args.out.endswith(".json"):
        raise ValueError(f"--out must name a .json file, got {args.out!r}")


def check_baseline(args: argparse.Namespace) -> None:
    """Every ``rsi-baseline`` flag checked before any work (chapter 5)."""
    from ..io.validation import check_int

    check_int("--seed", args.seed, minimum=0)
    path = Path(args.run)
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--run {path}: not a readable run card ({exc})") from None
    missing = {"history", "initial_model", "rsi_config", "name"} - set(run)
    if missing:
        raise ValueError(
            f"--run {path} is not an rsi --ship card (no {', '.join(sorted(missing))})"
        )
    from ..io.artifacts import load_card
    from .baseline import start_hyperparameters

    start = Path(run["initial_model"]).stem
    try:
        start_hyperparameters(load_card(start))
    except FileNotFoundError:
        raise ValueError(
            f"--run {path} starts from {start}, which is not in models/: the baseline "
            "trains the run's own start"
        ) from None


def add_parsers(sub) -> None:
    """Register ``rsi-gate`` and ``rsi-baseline`` (chapter 5)."""
    gate = sub.add_parser(
        "rsi-gate",
        help="false acceptance and power of each acceptance test, on identical models",
    )
    gate.add_argument("--repeats", type=int, default=1200, help="scores per model")
    gate.add_argument("--workers", type=int, default=2, help="processes")
    gate.add_argument("--out", default="models/rsi_gate.json", help="the JSON written")
    gate.set_defaults(func=cmd_rsi_gate, check=check_gate)

    base = sub.add_parser(
        "rsi-baseline",
        help="plain training of an rsi run's start, with the run's environment steps",
    )
    base.add_argument("--run", required=True, help="the run's card (rsi --ship JSON)")
    base.add_argument("--seed", type=int, default=0, help="training seed")
    base.add_argument(
        "--ship", required=True, help="the model and card written, e.g. models/NAME"
    )
    base.set_defaults(func=cmd_rsi_baseline, check=check_baseline)
