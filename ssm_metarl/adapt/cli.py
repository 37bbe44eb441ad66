"""Command line for chapter 4: ``python -m ssm_metarl incontext``, the in-context flip
policy and its card.

``incontext`` trains `StateSpaceModel` with the balanced PPO recipe of
`ssm_metarl.adapt.in_context.train_in_context` (flags from `InContextConfig`), then
scores it with no gradient step on three sets of the family: both worlds at the default
physics (validation: training selected its weights on them), unseen tasks from the
training ranges (test), and tasks from the held-out physics ranges (held out). It
writes ``OUT.pth`` and the card ``OUT.json`` (command, log, evaluation). The gradient
adapters' models are trained by ``train --family goal_sharp``. Taught in chapter 4.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import time
from dataclasses import asdict
from pathlib import Path

__all__ = ["add_parsers", "in_context_evaluation", "IN_RANGE_SEED"]

#: Seed of the unseen in-range tasks
#: (`TaskDistribution.sample(..., split="validation")`); never trained on.
IN_RANGE_SEED = 41_414


def in_context_evaluation(
    model, family: str, n_tasks: int = 48, episodes: int = 5
) -> dict:
    """The card's evaluation of an in-context policy: no gradient step, greedy and
    sampled actions, on three sets (default physics: validation, the weights were
    selected on them; unseen in-range tasks: test; out-of-range tasks: held out), each
    world's mean with a 95% CI over tasks. Defined in chapter 4."""
    from ..cartpole.tasks import CartPoleTask, get_family
    from ..meta.evaluation import TEST_SEED, test_tasks
    from .in_context import evaluate_in_context

    fam = get_family(family)
    sets = {
        "default": [CartPoleTask(flip=f) for f in (False, True)] * (n_tasks // 2),
        "in_range": fam.sample(n_tasks, seed=IN_RANGE_SEED, split="validation"),
        "out_of_range": test_tasks(fam, n_tasks),
    }
    result = {
        "protocol": (
            f"{n_tasks} tasks per set, {episodes} episodes each, seed TEST_SEED + 1, "
            "no gradient step; default = both worlds at the default physics "
            "(validation: among the tasks the weights were selected on); "
            f"in_range = {family}.sample({n_tasks}, seed={IN_RANGE_SEED}, "
            "split='validation') (test: unseen, from the training ranges); "
            f"out_of_range = test_tasks({family}, {n_tasks}) (held out: physics from "
            "the held-out ranges)"
        )
    }
    for name, tasks in sets.items():
        result[name] = {
            mode: evaluate_in_context(
                model, tasks, episodes, seed=TEST_SEED + 1, greedy=(mode == "greedy")
            ).to_dict()
            for mode in ("greedy", "sampled")
        }
    return result


def cmd_incontext(args: argparse.Namespace) -> int:
    import torch

    from ..models.ssm import StateSpaceModel
    from .in_context import InContextConfig, train_in_context, validation_worlds

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = InContextConfig(
        **{
            k: getattr(args, k)
            for k in InContextConfig.__dataclass_fields__
            if hasattr(args, k)
        }
    )
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = StateSpaceModel(32, 4, 4, 64)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # checked by check_incontext
    start = time.perf_counter()
    result = train_in_context(model, config, progress=not args.quiet)
    history = result.history
    every = max(1, len(history.get("iteration", [])) // 400)
    card = {
        "name": out.stem,
        "command": "python -m ssm_metarl "
        + " ".join(shlex.quote(a) for a in args.argv),
        "created_by": "ssm_metarl.cli incontext",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "kind": "StateSpaceModel",
        "model_config": asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_config": config.to_dict(),
        "solved": result.solved,
        "solved_at_steps": result.solved_at_steps,
        "solved_at_seconds": result.solved_at_seconds,
        "skipped_updates": result.skipped_updates,
        "env_steps": history["env_steps"][-1],
        "train_seconds": history["seconds"][-1],
        "selected": result.final_eval,
        "selection_tasks": f"validation_worlds({config.family!r}): "
        f"{len(validation_worlds(config.family))} tasks, 2 greedy episodes each",
        "log": {k: v[::every] for k, v in history.items()},
        "validation": result.validation,
    }
    card["evaluation"] = in_context_evaluation(model, config.family)
    card["wall_seconds"] = time.perf_counter() - start
    model.save(out, extra={"in_context": config.to_dict()}, card=card)
    print(f"wrote {out} and {out.with_suffix('.json')} in {card['wall_seconds']:.0f} s")
    return 0


def check_incontext(args: argparse.Namespace) -> None:
    """Every flag of ``incontext`` before any work: the config's values (named as
    flags), ``--threads`` and ``--out`` (chapter 4)."""
    import re

    from ..io.paths import check_out_file
    from ..io.validation import check_int
    from .in_context import InContextConfig

    try:
        InContextConfig(
            **{
                k: getattr(args, k)
                for k in InContextConfig.__dataclass_fields__
                if hasattr(args, k)
            }
        )
    except (TypeError, ValueError) as exc:  # name the flag, not the dataclass field
        raise ValueError(re.sub(r"^(\w+) must", r"--\1 must", str(exc))) from None
    if args.threads is not None:
        check_int("--threads", args.threads)
    check_out_file("--out", args.out)


def add_parsers(sub, add_config_flags) -> None:
    """Register ``incontext`` on the main parser's subcommands (chapter 4)."""
    from .in_context import InContextConfig

    parser = sub.add_parser(
        "incontext",
        help="train an in-context flip policy (balanced PPO) and write OUT.pth + card",
        description=__doc__.splitlines()[0],
    )
    add_config_flags(parser, InContextConfig, added=set())
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--out",
        required=True,
        help="where to write the model, e.g. models/cartpole_flip_incontext.pth",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_incontext, check=check_incontext, argv=None)
