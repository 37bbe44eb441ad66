"""What a worker sends back, checked: models travel as text, and the coordinator trusts
no number it did not measure itself.

A worker reports its candidate's model (config and weights, as JSON-ready text) and its
validation returns. Any process that can write to the study could report anything, so
before a candidate is accepted the coordinator decodes the model without running any
code, checks its shape against the growth the trial proposed and that every weight is
finite, and scores it again itself on the same validation tasks with the same seed.
A candidate that fails any check is refused, with the reason in the history. Chapter 5.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import asdict, fields

import numpy as np
import torch

from ..models.ssm import SSMConfig, StateSpaceModel
from .decision import decide
from .search import SEARCH_SPACE, Candidate, RSIConfig, unsafe_reason

__all__ = [
    "encode_model",
    "decode_model",
    "reported_problem",
    "model_problem",
    "rescore_problem",
    "candidate_entry",
    "verified_decision",
]

#: How far the coordinator's own score may sit from a worker's report: the same seed
#: gives the same episodes, so only rounding across machines and thread counts differs.
TOLERANCE = (1.0, 0.02)  # return points, and a fraction of the return


def encode_model(model: StateSpaceModel) -> dict:
    """A model as JSON-ready text (config + base64 weights), to travel through any
    Optuna storage (chapter 5)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return {
        "config": asdict(model.config),
        "state": base64.b64encode(buffer.getvalue()).decode(),
    }


def decode_model(data: dict) -> StateSpaceModel:
    """The inverse of `encode_model`: a weights-only load (no code runs) into a model
    built from a checked config; a ValueError says what is wrong (chapter 5)."""
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError("no model config")
    names = {f.name for f in fields(SSMConfig)}
    if set(data["config"]) - names:
        raise ValueError(f"unknown config fields {sorted(set(data['config']) - names)}")
    config = SSMConfig(**data["config"])
    if max(config.state_dim, config.hidden_dim) > 4096:
        raise ValueError(f"implausible size {config}")
    try:
        raw = base64.b64decode(str(data.get("state", "")), validate=True)
        state = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as exc:  # binascii.Error, pickle or zip errors
        raise ValueError(f"weights unreadable ({type(exc).__name__})") from None
    model = StateSpaceModel(**asdict(config))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:120]
        raise ValueError(f"weights do not fit the config ({first})") from None
    return model


def reported_problem(returns, n_tasks: int) -> str | None:
    """Why a worker's reported returns cannot be used, or None. Chapter 5."""
    if returns is None:
        return "no returns reported"
    if not isinstance(returns, list) or len(returns) != n_tasks:
        got = len(returns) if isinstance(returns, list) else type(returns).__name__
        return f"reported {got} returns for {n_tasks} validation tasks"
    if not all(isinstance(r, (int, float)) and math.isfinite(r) for r in returns):
        return "reported non-finite returns"
    return None


def model_problem(
    attrs: dict, params: dict, current: StateSpaceModel, current_lr: float
) -> tuple[Candidate | None, str | None]:
    """Decode a trial's model and check it: readable, weights that fit its config, the
    current model's inputs and outputs and no smaller, finite weights, a step size
    inside the search space (or the current one, kept). Returns (the candidate, None)
    or (None, why it is refused). Chapter 5."""
    try:
        model = decode_model(attrs.get("model"))
    except (ValueError, TypeError) as exc:
        return None, f"model refused: {exc}"
    cfg, now = model.config, current.config
    if (cfg.input_dim, cfg.output_dim, cfg.bounded) != (
        now.input_dim,
        now.output_dim,
        now.bounded,
    ) or min(cfg.state_dim - now.state_dim, cfg.hidden_dim - now.hidden_dim) < 0:
        return None, (
            f"wrong-shaped model: state {cfg.state_dim}, hidden {cfg.hidden_dim}, "
            f"input {cfg.input_dim}, output {cfg.output_dim}, where the current model "
            f"has {now.state_dim}, {now.hidden_dim}, {now.input_dim}, "
            f"{now.output_dim} (sizes only grow)"
        )
    lr, (low, high) = attrs.get("inner_lr"), SEARCH_SPACE["inner_lr"]
    kept = isinstance(lr, (int, float)) and lr == current_lr  # the current one, kept
    if not kept and (not isinstance(lr, (int, float)) or not low <= lr <= high):
        return None, f"step size {lr!r} outside the search space [{low:g}, {high:g}]"
    candidate = Candidate(model, float(lr))
    reason = unsafe_reason(candidate)
    return (None, reason) if reason else (candidate, None)


def rescore_problem(reported, own) -> str | None:
    """Why the coordinator's own validation returns contradict a worker's report (a
    hostile or broken worker), or None. Chapter 5."""
    own = np.asarray(own, dtype=np.float64)
    if not np.all(np.isfinite(own)):
        return "non-finite validation returns when the coordinator scored it"
    gap, mean = abs(float(np.mean(reported)) - float(own.mean())), float(own.mean())
    if gap > TOLERANCE[0] + TOLERANCE[1] * abs(mean):
        return (
            f"the worker reported a validation mean of {np.mean(reported):.1f}, the "
            f"coordinator measured {mean:.1f} on the same tasks and seed"
        )
    return None


def candidate_entry(trial, n_tasks: int) -> dict:
    """A finished trial as the decision sees it; reported returns that cannot be right
    (a wrong count, not finite) make it unsafe. Chapter 5."""
    attrs = trial.user_attrs
    entry = {
        "trial": trial.number,
        "params": dict(trial.params),
        "train": attrs.get("train"),
        "returns": attrs.get("returns"),
        "unsafe": attrs.get("unsafe"),
        "reason": attrs.get("reason"),
        "state": trial.state.name,
        "worker": attrs.get("worker"),
    }
    if trial.state.name == "COMPLETE" and not entry["unsafe"]:
        problem = reported_problem(entry["returns"], n_tasks)
        if problem:
            entry.update(returns=None, unsafe=f"refused: {problem}")
    return entry


def verified_decision(
    current,
    candidates: list[dict],
    trials: list,
    config: RSIConfig,
    current_model: StateSpaceModel,
    current_lr: float,
    rescore,
    cycle: int,
):
    """`decide`, with the winner checked (`model_problem`) and re-scored by the
    coordinator (`rescore(candidate)` -> its own validation returns) before it is
    accepted; the decision then rests on the coordinator's own returns. A winner that
    fails is refused with its reason and the rule runs again on the rest. Returns
    (index or None, reason, verdicts, the accepted model or None). Chapter 5."""
    checked = {}
    while True:
        chosen, reason, verdicts = decide(current, candidates, config, seed=cycle)
        if chosen is None or chosen in checked:
            return chosen, reason, verdicts, checked.get(chosen)
        entry = candidates[chosen]
        found, problem = model_problem(
            trials[chosen].user_attrs, entry["params"], current_model, current_lr
        )
        if found is not None:
            own = np.asarray(rescore(found), dtype=np.float64)
            problem = rescore_problem(entry["returns"], own)
        if problem:
            entry.update(returns=None, unsafe=f"refused by the coordinator: {problem}")
            continue
        entry.update(
            reported_mean=float(np.mean(entry["returns"])), returns=own.tolist()
        )
        checked[chosen] = found.model
