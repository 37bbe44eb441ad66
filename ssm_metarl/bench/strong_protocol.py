"""Chapter 6's strong protocol: every agent as a (training runs x test tasks) matrix on
the 48 test tasks of the ``goal`` family, with two-level CIs and rliable's IQM.

``strong_protocol`` scores the five independently trained models of each method
(``models/replication/``: MAML, ANIL, multi-task, equal budgets) under the model card's
adaptation settings and the study's own, one row per setting: no repeats, and where two
settings are the same model, one row whose name says why. Scoring is the study's
(:mod:`ssm_metarl.bench.strong_rows`), so the rows the study also measured equal its
results store (``models/results.json``), and the protocol checks that they do.
``strong_live`` re-scores one model for a few settings, for a chapter to compare with
the shipped matrix. The card's own protocol is :mod:`ssm_metarl.bench.card_protocol`.
Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np

from ..io.artifacts import load_card
from ..protocol.measure import STEPS
from ..protocol.store import Results
from ..report.progress import progress_bar
from ..report.two_level import two_level_ci
from .card_protocol import CARD_CONFIGS, RSI_RUN
from .rliable_stats import iqm_ci
from .strong_rows import (
    FAMILY,
    REPLAY_WEIGHT,
    RUNS,
    Setting,
    load_run,
    score_random,
    score_run,
    strong_tasks,
)

__all__ = ["strong_settings", "strong_protocol", "strong_live", "check_against_store"]

#: The agents beside MAML: (method, label, settings).
_OTHERS = (
    ("multitask", "multi-task", (Setting("none"), Setting("standard", 1))),
    ("anil", "ANIL", (Setting("standard", 1),)),
)
#: Chapter 6's live re-run: a few MAML settings of one run.
LIVE_SETTINGS = (Setting("none"), Setting("standard", 1), Setting("hybrid", 3))


def _rsi_unchanged() -> bool:
    """True when the shipped RSI run started from chapter 3's MAML model and accepted
    no change up to cycle 3 (its model after 0, 1 and 3 cycles is that MAML model)."""
    card = load_card(RSI_RUN)
    return card["initial_model"] == f"cartpole_{FAMILY}_maml.pth" and not any(
        c < 3 for c in card["accepted_cycles"]
    )


def _name(label: str, s: Setting) -> str:
    if s.kind == "none":
        return f"{label}, no adaptation"
    at = "the tuned lr" if s.lr is None else f"{s.lr:g}"
    steps = f"{s.steps} step{'s' * (s.steps != 1)}"
    return f"{label}, {'' if s.steps == 1 else s.kind + ' '}{steps} at {at}"


def strong_settings(rsi_unchanged: bool | None = None) -> list[dict]:
    """The strong protocol's rows before scoring (chapter 6): name, method, `Setting`,
    and the settings each row also is (`also`).

    MAML: no adaptation; 1 step at the tuned lr (hybrid's 1 step is the same model:
    replay's KL has zero gradient at the start weights); standard and hybrid 3 steps at
    the tuned lr; the card's configs (`CARD_CONFIGS`), standard and hybrid. Then
    multi-task (none, 1 step) and ANIL (1 step, its head). The no-adaptation row is
    also RSI after 0, 1 or 3 cycles only if the shipped RSI run accepted nothing.
    """
    if rsi_unchanged is None:
        rsi_unchanged = _rsi_unchanged()
    maml = [Setting("none"), Setting("standard", 1)]
    maml += [Setting(k, 3) for k in ("standard", "hybrid")]
    maml += [
        Setting(k, n, lr) for n, lr in CARD_CONFIGS for k in ("standard", "hybrid")
    ]
    specs = [{"name": "random policy", "method": "random", "setting": Setting("none")}]
    for s in maml:
        spec = {"name": _name("MAML", s), "method": "maml", "setting": s}
        if s == Setting("none") and rsi_unchanged:
            spec["name"] += (
                " (also RSI after 0, 1 or 3 cycles: the shipped RSI run accepted no "
                "change)"
            )
            spec["also"] = [{**s.to_dict("rsi"), "cycles": c} for c in (0, 1, 3)]
        if s == Setting("standard", 1):
            spec["name"] += (
                " (= hybrid 1 step: replay's KL has zero gradient at the start weights)"
            )
            spec["also"] = [Setting("hybrid", 1).to_dict("maml")]
        specs.append(spec)
    for method, label, settings in _OTHERS:
        for s in settings:
            head = " (output head only)" if method == "anil" else ""
            specs.append(
                {"name": _name(label, s) + head, "method": method, "setting": s}
            )
    return specs


def _row(spec: dict, matrix: np.ndarray, steps: float, lrs: list) -> dict:
    """One row of the strong section: the (runs, tasks) matrix rounded to 0.1 and the
    estimates computed from it."""
    matrix = np.round(matrix, 1)
    s: Setting = spec["setting"]
    return {
        "name": spec["name"],
        "method": spec["method"],
        "setting": s.to_dict(spec["method"]),
        "also": spec.get("also", []),
        "reported": "–",
        "per_run": matrix.tolist(),
        "returns": np.round(matrix.mean(0), 1).tolist(),  # per task, mean over runs
        "ci": two_level_ci(matrix).to_dict(),
        "iqm": iqm_ci(matrix),
        "adapted": s.steps > 0,
        "env_steps": round(steps) if s.steps > 0 else 0,
        "adaptation_lrs": lrs if s.kind != "none" and s.lr is None else None,
    }


def _score(specs: list[dict], runs: int, tasks, progress: bool):
    """{row name: (runs, tasks) matrix}, support steps per method, tuned lrs, refusals
    of the hybrid adapter's guard."""
    out: dict[str, list] = {}
    steps: dict[str, list] = {}
    lrs: dict[str, list] = {}
    refused = 0
    random = score_random(tasks)
    methods = [m for m in dict.fromkeys(s["method"] for s in specs) if m != "random"]
    jobs = [(m, r) for m in methods for r in range(runs)]
    for method, run in progress_bar(jobs, enabled=progress, desc="strong protocol"):
        mine = [s for s in specs if s["method"] == method]
        model, card = load_run(method, run)
        scored = score_run(model, card, method, [s["setting"] for s in mine], tasks)
        for s in mine:
            out.setdefault(s["name"], []).append(scored["returns"][s["setting"]])
        steps.setdefault(method, []).append(scored["support_steps"])
        lrs.setdefault(method, []).append(float(card["adaptation_lr"]))
        refused += scored["refused"]
    for s in specs:
        if s["method"] == "random":  # untrained: the same policy for every run
            out[s["name"]] = [random] * runs
    return {k: np.stack(v) for k, v in out.items()}, steps, lrs, refused


def check_against_store(rows: list[dict], store: Results | None = None) -> float:
    """Largest gap between a strong row and the results store where both scored the
    same models under the same setting (chapter 6): MAML, ANIL and multi-task after 0,
    1 or 3 standard steps at the tuned lr. Raises if a gap exceeds the rounding."""
    store = Results.load() if store is None else store
    gap = 0.0
    for row in rows:
        s = row["setting"]
        tuned = s["kind"] == "none" or (s["kind"] == "standard" and s["lr"] == "tuned")
        if row["method"] == "random" or not tuned or s["steps"] not in STEPS:
            continue
        kept = store.matrix(FAMILY, row["method"], "test", s["steps"])
        ours = np.asarray(row["per_run"])
        gap = max(gap, float(np.abs(ours - kept[: len(ours), : ours.shape[1]]).max()))
    if gap > 0.051:  # rows rounded to 0.1, the store to 0.001
        raise AssertionError(
            f"the strong protocol differs from the results store by {gap:.3f}; "
            "rebuild the store with `python -m ssm_metarl replicate`"
        )
    return gap


def strong_protocol(runs: int = RUNS, progress: bool = False) -> dict:
    """Chapter 6's strong protocol: every row of `strong_settings` as a (`runs`
    training runs x 48 test tasks) matrix of the ``goal`` family, each with the mean
    and its two-level 95% CI (runs and tasks resampled) and rliable's IQM with its CI.

    Each run is an independently trained model of its method (the untrained random
    policy is the same in every run); every model adapts on 10 support episodes per
    task and is scored on 10 fresh sampled episodes, as the study scores (the rows it
    also measured are checked against its store). The IQM is rliable's
    ``aggregate_iqm`` of all runs x tasks scores, not of the runs' means. Minutes on
    one core.
    """
    if not 1 <= runs <= RUNS:
        raise ValueError(f"runs must be 1..{RUNS} (the replicated models), got {runs}")
    tasks = strong_tasks()
    specs = strong_settings()
    matrices, steps, lrs, refused = _score(specs, runs, tasks, progress)
    rows = [
        _row(
            s,
            matrices[s["name"]],
            float(np.mean(steps.get(s["method"], [0.0]))),
            lrs.get(s["method"]),
        )
        for s in specs
    ]
    gap = check_against_store(rows)
    return {
        "what": (
            f"{len(tasks)} test '{FAMILY}' tasks x {runs} training runs per method "
            "(models/replication), 10 support and 10 scored sampled episodes per task; "
            "95% CIs over runs and tasks"
        ),
        "family": FAMILY,
        "training_runs": runs,  # ("runs" are learning curves in plots.py)
        "n_tasks": len(tasks),
        "rows": rows,
        "replay_weight": REPLAY_WEIGHT,
        "hybrid_refused_tasks": refused,
        "store_gap": round(gap, 4),
    }


def strong_live(
    run: int = 0, n_tasks: int = 48, settings=LIVE_SETTINGS, shipped=None
) -> dict:
    """Chapter 6's live re-run: MAML run `run` re-scored under a few `settings` on the
    first `n_tasks` test tasks, in seconds.

    The episodes of all tasks are drawn as one batch, so only ``n_tasks=48`` replays
    the shipped numbers exactly; with fewer tasks the same models meet other sampled
    actions. `shipped`: the strong section; each row then holds the shipped values of
    the same run and tasks, and ``max_gap`` the largest difference.
    """
    tasks = strong_tasks(n_tasks)
    model, card = load_run("maml", run)
    scored = score_run(model, card, "maml", list(settings), tasks)["returns"]
    by_setting = {
        tuple(sorted(r["setting"].items())): r for r in (shipped or {}).get("rows", [])
    }
    rows, gap = [], 0.0
    for s in settings:
        live = np.round(scored[s], 1)
        row = {"setting": s.to_dict("maml"), "live": live.tolist()}
        old = by_setting.get(tuple(sorted(row["setting"].items())))
        if old is not None:
            kept = np.asarray(old["per_run"][run][:n_tasks])
            row.update(name=old["name"], shipped=kept.tolist())
            gap = max(gap, float(np.abs(live - kept).max()))
        rows.append(row)
    return {"run": run, "n_tasks": n_tasks, "rows": rows, "max_gap": gap}
