"""Chapter 3's ``train`` command: ``python -m ssm_metarl train ... --out OUT.pth``.

Meta-trains (or multi-task trains) a policy on a task family, or a sine regressor, and
writes ``OUT.pth`` with its card ``OUT.json`` (command, log, evaluation). Its flags are
built from the config dataclasses (:class:`~ssm_metarl.meta.maml_rl.MetaRLConfig`,
:class:`~ssm_metarl.models.ssm.SSMConfig`, :class:`~ssm_metarl.meta.sine.SineConfig`),
so every default exists once, in its dataclass. Each family takes only its own flags: a
CartPole flag given with ``--family sine`` (or the reverse) is an error, never silently
reinterpreted. Every flag, ``--out`` and the resume file ``OUT.resume.pth`` are checked
before any work; Ctrl-C says where the resume file is. Taught in chapter 3.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, fields
from pathlib import Path

__all__ = ["add_parsers", "check_train", "cmd_train", "interrupted", "FRESH"]


def _configs():
    from ..models.ssm import SSMConfig
    from .maml_rl import MetaRLConfig
    from .sine import SineConfig

    return MetaRLConfig, SSMConfig, SineConfig


#: The fields of SSMConfig that ``train`` takes as flags (input and output sizes are
#: CartPole's).
_SSM_FLAGS = ("state_dim", "hidden_dim")


def _picked(args: argparse.Namespace, cls, names=None) -> dict:
    """The flags the user gave that are fields of ``cls`` (the rest keep the dataclass's
    defaults)."""
    names = names or [f.name for f in fields(cls)]
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


#: How the resume messages tell a CLI user to start afresh.
FRESH = "pass --no-resume to start afresh (or another --out)"


def check_train(args: argparse.Namespace) -> None:
    """Every check ``train`` needs, before any work: values, family, output paths, the
    resume file (chapter 3)."""
    import torch

    from ..io.paths import check_out_file
    from ..io.validation import check_int, check_positive

    _check_family_flags(args)
    MetaRLConfig, SSMConfig, SineConfig = _configs()
    check_int("--test_tasks", args.test_tasks)
    if args.threads is not None:
        check_int("--threads", args.threads)
    if args.max_minutes is not None:
        check_positive("--max_minutes", args.max_minutes, finite=False)
    if hasattr(args, "seed"):
        check_int("--seed", args.seed, minimum=0)
    try:
        if args.family == "sine":
            SineConfig(**_picked(args, SineConfig))
        else:
            from ..cartpole.tasks import get_family

            get_family(args.family)
            config = MetaRLConfig(**_picked(args, MetaRLConfig))
            model_config = SSMConfig(**_picked(args, SSMConfig, _SSM_FLAGS))
    except (TypeError, ValueError) as exc:  # name the flag, not the dataclass field
        raise ValueError(re.sub(r"^(\w+) must", r"--\1 must", str(exc))) from None
    out = check_out_file("--out", args.out, siblings=(".json", ".resume.pth"))
    resume = out.with_suffix(".resume.pth")
    if args.family != "sine" and not args.no_resume and resume.exists():
        from ..models.ssm import StateSpaceModel
        from .run_state import MetaRunState

        with torch.random.fork_rng():
            model = StateSpaceModel(**asdict(model_config))
        MetaRunState.check(resume, model, config, fresh=FRESH)


def interrupted(args: argparse.Namespace) -> str:
    """The one line printed on Ctrl-C: where the run's resume file is, if it has one
    (chapter 3)."""
    if args.family == "sine":
        return (
            "interrupted: sine training keeps no resume file; nothing was written to "
            f"{args.out}"
        )
    resume = Path(args.out).with_suffix(".resume.pth")
    if not resume.exists():
        return (
            f"interrupted before the first validation: no resume file yet ({resume}); "
            "nothing was written"
        )
    return (
        f"interrupted: the run is saved in {resume}; run the same command again to "
        "resume it"
    )


def _check_family_flags(args: argparse.Namespace) -> None:
    """Reject flags of the other family, naming them and the right ones."""
    MetaRLConfig, _, SineConfig = _configs()
    rl_only = (
        ({f.name for f in fields(MetaRLConfig)} | set(_SSM_FLAGS))
        - {f.name for f in fields(SineConfig)}
        - {"family", "mode"}
    )
    sine_only = (
        {f.name for f in fields(SineConfig)}
        - {f.name for f in fields(MetaRLConfig)}
        - set(_SSM_FLAGS)
    )
    wrong = sorted(
        n for n in (rl_only if args.family == "sine" else sine_only) if hasattr(args, n)
    )
    if wrong:
        flags = ", ".join(f"--{n}" for n in wrong)
        own = sorted(sine_only if args.family == "sine" else rl_only)
        raise ValueError(
            f"{flags} do(es) not apply to --family {args.family}; its flags are "
            + ", ".join(f"--{n}" for n in own)
            + " (plus --mode, --inner_lr, --outer_lr, --seed)"
        )


def cmd_train(args: argparse.Namespace) -> int:
    """Meta-train (or multi-task train) a policy and write ``OUT.pth`` and its card
    ``OUT.json`` (chapter 3)."""
    import platform
    import shlex
    import time

    import torch

    if args.threads is not None:
        # only when asked: small models often run faster on one thread
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "name": out.stem,
        "command": "python -m ssm_metarl "
        + " ".join(shlex.quote(a) for a in args.argv),
        "created_by": "ssm_metarl.cli train",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    start = time.perf_counter()
    found, write = (
        _train_sine(args, out) if args.family == "sine" else _train_rl(args, out)
    )
    card.update(found)
    card["wall_seconds"] = time.perf_counter() - start
    # the model and its card, as one unit (the card holds the weights' sha256)
    write(card)
    resume = out.with_suffix(".resume.pth")
    if args.family != "sine" and not args.keep_resume and resume.exists():
        resume.unlink()  # the run finished: its final state is the model above
    print(f"wrote {out} and {out.with_suffix('.json')} in {card['wall_seconds']:.0f} s")
    return 0


def _train_rl(args: argparse.Namespace, out):
    import torch

    from ..models.ssm import StateSpaceModel
    from .evaluation import card_evaluation
    from .training import meta_train

    MetaRLConfig, SSMConfig, _ = _configs()
    config = MetaRLConfig(**_picked(args, MetaRLConfig))
    # seeded initial weights, the caller's global RNG untouched
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = StateSpaceModel(
            **asdict(SSMConfig(**_picked(args, SSMConfig, _SSM_FLAGS)))
        )
    resume_path = out.with_suffix(".resume.pth")
    budget = None if args.max_minutes is None else 60.0 * args.max_minutes
    result = meta_train(
        model,
        config,
        checkpoint=str(resume_path),
        resume=not args.no_resume,
        progress=not args.quiet,
        max_seconds=budget,
        fresh=FRESH,
    )
    evaluated = card_evaluation(model, config, args.test_tasks)
    summary = {
        "best_epoch": result.best_epoch,
        "best_validation": result.best_validation,
        "epochs_run": len(result.history.get("epoch", [])),
        "stopped_early": result.stopped_early,
        "skipped_updates": result.skipped_updates,
        "adaptation_lr": evaluated["adaptation_lr"],
        "adaptation_lr_validation": evaluated["adaptation_lr_validation"],
    }
    extra = {"meta_train": {**summary, "config": config.to_dict()}}
    return {
        "kind": "StateSpaceModel",
        "model_config": asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_config": config.to_dict(),
        **summary,
        "train_seconds": result.total_seconds,
        "env_steps": result.env_steps,
        "log": result.history,
        "validation": result.validation,
        "evaluation": evaluated["evaluation"],
    }, lambda card: model.save(out, extra=extra, card=card)


def _train_sine(args: argparse.Namespace, out):
    from ..io.checkpoint import save_checkpoint
    from ..report.stats import bootstrap_ci
    from . import sine

    _, _, SineConfig = _configs()
    method = getattr(args, "mode", "maml")
    config = SineConfig(**_picked(args, SineConfig))
    model, losses, seconds = sine.train_sine(method, config, progress=not args.quiet)

    def write(card):
        save_checkpoint(
            out,
            kind="SineRegressor",
            config={"hidden_dim": config.hidden_dim},
            card=card,
            state_dict=model.state_dict(),
            extra={"train_config": config.to_dict(), "method": method},
        )

    amplitude, phase = sine.SineTasks(sine.SINE_TEST_SEED).sample(args.test_tasks)
    errors, _ = sine.sine_errors(
        model, amplitude, phase, steps=(0, 1, 10), seed=sine.SINE_TEST_SEED + 1
    )
    every = max(1, len(losses) // 500)
    return {
        "kind": "SineRegressor",
        "method": method,
        "train_config": config.to_dict(),
        "train_seconds": seconds,
        "log": {
            "iteration": list(range(0, len(losses), every)),
            "meta_loss": [
                float(sum(losses[i : i + every]) / len(losses[i : i + every]))
                for i in range(0, len(losses), every)
            ],
        },
        "evaluation": {
            "split": f"{args.test_tasks} test sines (seed {sine.SINE_TEST_SEED}): "
            "unseen draws from the training distribution",
            "protocol": (
                "K=10 support points, k gradient steps of the inner lr, MSE on 100 "
                "grid points"
            ),
            "mse": {
                str(k): bootstrap_ci(v.numpy()).to_dict() for k, v in errors.items()
            },
        },
    }, write


def add_parsers(sub, add_config_flags) -> None:
    """Register ``train`` on the main parser's subcommands; ``add_config_flags`` makes a
    dataclass's fields flags (chapter 3)."""
    train = sub.add_parser(
        "train",
        help="meta-train a policy (MAML) or its baselines; writes OUT.pth and OUT.json",
        description=(
            "Meta-train with MAML on a task family (chapter 3). The model card's "
            "flags are accepted. The card's '--mode hybrid' names a test-time "
            "adaptation mode (chapter 4); here --mode picks the training method. "
            "CartPole families and 'sine' take different flags; a flag of the other "
            "family is an error."
        ),
    )
    MetaRLConfig, SSMConfig, SineConfig = _configs()
    added: set[str] = set()
    cartpole = train.add_argument_group("CartPole families (MetaRLConfig, SSMConfig)")
    add_config_flags(cartpole, MetaRLConfig, added=added)
    add_config_flags(
        cartpole, SSMConfig, names=_SSM_FLAGS, note="CartPole ", added=added
    )
    sine = train.add_argument_group(
        "--family sine (SineConfig; shared flags above keep their meaning)"
    )
    add_config_flags(sine, SineConfig, note="sine ", added=added)
    sine_defaults = {f.name: f.default for f in fields(SineConfig)}
    for action in train._actions:  # a shared flag with its own sine default says so
        if action.dest == "family":
            action.help = action.help.replace(
                " (default", "; or 'sine' for sine regression (default"
            )
        elif (
            action.dest in sine_defaults
            and action.dest not in ("seed",)
            and f"--{action.dest}"
            not in {o for a in sine._group_actions for o in a.option_strings}
        ):
            action.help = action.help[:-1] + f"; sine: {sine_defaults[action.dest]})"
    train.add_argument(
        "--test_tasks",
        type=int,
        default=48,
        help="test tasks for the card's evaluation (default: 48)",
    )
    train.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice)",
    )
    train.add_argument(
        "--max_minutes",
        type=float,
        default=None,
        help="stop training after a validation once this much wall time has passed",
    )
    train.add_argument(
        "--out", required=True, help="where to write the model, e.g. models/NAME.pth"
    )
    train.add_argument(
        "--no-resume",
        dest="no_resume",
        action="store_true",
        help="start afresh even if OUT.resume.pth exists",
    )
    train.add_argument(
        "--keep-resume",
        dest="keep_resume",
        action="store_true",
        help="keep OUT.resume.pth after a finished run",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(
        func=cmd_train,
        check=check_train,
        interrupted=interrupted,
        argv=None,
        family=MetaRLConfig.family,
    )
