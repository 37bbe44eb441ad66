"""Command line: ``python -m ssm_metarl {train,bench,...}``.

Each subcommand is one function ``cmd_NAME(args)`` with its parser built in
:func:`build_parser`; see the book's appendix for every artifact's command.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main", "build_parser"]


def cmd_bench(args: argparse.Namespace) -> int:
    from . import benchmark

    names = benchmark.available()
    if args.name not in names:
        raise SystemExit(f"unknown benchmark {args.name!r}; choose one of {names}")
    result = getattr(benchmark, f"bench_{args.name}")(args)
    print(json.dumps(result, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Meta-train (or multi-task train) a policy and write ``OUT.pth`` and its card ``OUT.json``.

    Taught in chapter 3 (``03_maml``); every shipped model's command is in its card.
    """
    import platform
    import shlex
    import time
    from pathlib import Path

    import torch

    from .checkpoint import save_json

    if args.threads is not None:
        torch.set_num_threads(args.threads)  # only when asked: small models often run faster on one thread
    out = Path(args.out)
    if out.suffix != ".pth":
        raise SystemExit(f"--out must end in .pth (the card is written next to it as .json), got {args.out!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "name": out.stem,
        "command": "python -m ssm_metarl " + " ".join(shlex.quote(a) for a in args.argv),
        "created_by": "ssm_metarl.cli train",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
    }
    start = time.perf_counter()
    if args.family == "sine":
        card.update(_train_sine(args, out))
    else:
        card.update(_train_rl(args, out))
    card["wall_seconds"] = time.perf_counter() - start
    save_json(out.with_suffix(".json"), card)
    print(f"wrote {out} and {out.with_suffix('.json')} in {card['wall_seconds']:.0f} s")
    return 0


def _train_rl(args: argparse.Namespace, out) -> dict:
    from dataclasses import asdict

    import torch

    from . import maml
    from .ssm import StateSpaceModel
    from .tasks import get_family

    config = maml.MetaRLConfig(
        family=args.family, mode=args.mode, epochs=args.epochs, tasks_per_epoch=args.tasks_per_epoch,
        episodes=args.episodes, adaptation_steps=args.adaptation_steps, inner_lr=args.inner_lr,
        outer_lr=args.outer_lr, eval_every=args.eval_every, seed=args.seed)
    with torch.random.fork_rng():  # seeded initial weights, the caller's global RNG untouched
        torch.manual_seed(args.seed)
        model = StateSpaceModel(args.state_dim, 4, 4, args.hidden_dim)
    resume_path = out.with_suffix(".resume.pth")
    budget = None if args.max_minutes is None else 60.0 * args.max_minutes
    result = maml.meta_train(model, config, checkpoint=str(resume_path), resume=not args.no_resume,
                             progress=not args.quiet, max_seconds=budget)
    family = get_family(args.family)
    adaptation_lr, lr_scores = args.inner_lr, None
    if args.mode == "multitask":  # not trained for a step size: give it its best one, chosen on validation tasks
        adaptation_lr, lr_scores = maml.tune_inner_lr(model, family, steps=max(1, args.adaptation_steps),
                                                      episodes=args.episodes, seed=args.seed)
    tasks = maml.held_out_tasks(family, args.test_tasks)
    steps = sorted({0, 1, args.adaptation_steps, 3, 5})
    evaluation = maml.evaluate_adaptation(model, tasks, steps=steps, episodes=args.episodes,
                                          eval_episodes=args.episodes, inner_lr=adaptation_lr,
                                          seed=maml.TEST_SEED, greedy=config.greedy_eval)
    summary = {"best_epoch": result.best_epoch, "best_validation": result.best_validation,
               "epochs_run": len(result.history.get("epoch", [])), "stopped_early": result.stopped_early,
               "skipped_updates": result.skipped_updates, "adaptation_lr": adaptation_lr,
               "adaptation_lr_validation": None if lr_scores is None else {str(k): v for k, v in lr_scores.items()}}
    model.save(out, extra={"meta_train": {**summary, "config": config.to_dict()}})
    if not args.keep_resume and resume_path.exists():
        resume_path.unlink()  # the run finished: its final state is the model above
    return {
        "kind": "StateSpaceModel", "model_config": asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_config": config.to_dict(), **summary,
        "train_seconds": result.total_seconds, "env_steps": result.env_steps,
        "log": result.history, "validation": result.validation,
        "evaluation": {"split": f"test: {len(tasks)} held-out tasks of family {family.name!r}",
                       "protocol": f"adapt with k policy-gradient steps (inner lr {adaptation_lr}) on "
                                   f"{args.episodes} episodes per task, score {args.episodes} fresh episodes",
                       **evaluation.to_dict()},
    }


def _train_sine(args: argparse.Namespace, out) -> dict:
    from . import sine
    from .checkpoint import save_checkpoint
    from .stats import bootstrap_ci

    if args.mode not in sine.SINE_METHODS:
        raise SystemExit(f"--family sine needs --mode in {sine.SINE_METHODS}, got {args.mode!r}")
    config = sine.SineConfig(hidden_dim=args.hidden_dim, meta_batch=args.tasks_per_epoch, inner_lr=args.inner_lr,
                             outer_lr=args.outer_lr, inner_steps=max(1, args.adaptation_steps),
                             iterations=args.epochs, seed=args.seed)
    model, losses, seconds = sine.train_sine(args.mode, config, progress=not args.quiet)
    save_checkpoint(out, kind="SineRegressor", config={"hidden_dim": config.hidden_dim},
                    state_dict=model.state_dict(), extra={"train_config": config.to_dict(), "method": args.mode})
    amplitude, phase = sine.SineTasks(sine.TEST_SEED).sample(args.test_tasks)
    errors, _ = sine.sine_errors(model, amplitude, phase, steps=(0, 1, 10), seed=sine.TEST_SEED + 1)
    every = max(1, len(losses) // 500)
    return {
        "kind": "SineRegressor", "method": args.mode, "train_config": config.to_dict(), "train_seconds": seconds,
        "log": {"iteration": list(range(0, len(losses), every)),
                "meta_loss": [float(sum(losses[i:i + every]) / len(losses[i:i + every])) for i in range(0, len(losses), every)]},
        "evaluation": {"split": f"{args.test_tasks} held-out sines (seed {sine.TEST_SEED})",
                       "protocol": "K=10 support points, k gradient steps of the inner lr, MSE on 100 grid points",
                       "mse": {str(k): bootstrap_ci(v.numpy()).to_dict() for k, v in errors.items()}},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ssm_metarl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="speed benchmarks measured side by side in one run")
    bench.add_argument("name", help="which benchmark (e.g. ssm, rollout, rl, maml)")
    bench.add_argument("--seed", type=int, default=0)
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser("train", help="meta-train a policy (MAML) or its baselines; writes OUT.pth and OUT.json",
                           description="Meta-train with MAML on a task family (chapter 3). The model card's flags "
                                       "are accepted. The card's '--mode hybrid' names a test-time adaptation mode "
                                       "(chapter 4); here --mode picks the training method.")
    train.add_argument("--family", default="goal", help="task family (goal, flip, physics, standard, '+'-combinations) "
                                                         "or 'sine' for sine regression (default: goal)")
    train.add_argument("--mode", default="maml", choices=("maml", "fomaml", "multitask"),
                       help="second-order MAML, first-order MAML, or plain multi-task training (the baseline)")
    train.add_argument("--epochs", type=int, default=300, help="outer updates (default: 300)")
    train.add_argument("--tasks_per_epoch", type=int, default=20, help="tasks per outer update (default: 20)")
    train.add_argument("--state_dim", type=int, default=32, help="SSM state size (default: 32)")
    train.add_argument("--hidden_dim", type=int, default=64, help="SSM MLP width, or the sine MLP's (default: 64; the sine models use 40)")
    train.add_argument("--inner_lr", type=float, default=0.01, help="inner (adaptation) step size (default: 0.01)")
    train.add_argument("--outer_lr", type=float, default=0.001, help="Adam's outer step size (default: 0.001)")
    train.add_argument("--adaptation_steps", type=int, default=1, help="inner gradient steps (default: 1)")
    train.add_argument("--episodes", type=int, default=10, help="episodes per task per inner step / outer loss (default: 10)")
    train.add_argument("--eval_every", type=int, default=10, help="validate and checkpoint every N epochs (default: 10)")
    train.add_argument("--test_tasks", type=int, default=48, help="held-out tasks for the card's evaluation (default: 48)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    train.add_argument("--max_minutes", type=float, default=None,
                       help="stop training after a validation once this much wall time has passed")
    train.add_argument("--out", required=True, help="where to write the model, e.g. models/NAME.pth")
    train.add_argument("--no-resume", dest="no_resume", action="store_true",
                       help="start afresh even if OUT.resume.pth exists")
    train.add_argument("--keep-resume", dest="keep_resume", action="store_true",
                       help="keep OUT.resume.pth after a finished run")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train, argv=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded verbatim in model cards
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
