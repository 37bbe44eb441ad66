"""Chapter 6's card protocol: every row of the seed card's tables re-measured under its
own setting, and the card table that sets each row beside the strong protocol's row of
the same setting.

``card_protocol`` replays the card's setting row by row (CartPole-v1, 20 greedy
episodes, its three adaptation configs) on the shipped card model, beside the values
the card reported (``CARD_REPORTED``). Nothing is retrained. ``card_verdict`` has one
rule: *reproduced* iff the reported number lies inside our 95% CI (a reported range:
iff the CI overlaps it). ``card_table`` puts every card row beside the strong
protocol's row of the *same* setting (:mod:`ssm_metarl.bench.strong_protocol`), or
says there is none; ``stable_rows`` says whether a live re-run agrees with the shipped
numbers (*stable*, a different question). Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import torch

from ..adapt.adapters import (
    HybridAdaptationConfig,
    HybridAdapter,
    StandardAdaptationConfig,
    StandardAdapter,
)
from ..adapt.buffer import ExperienceBuffer
from ..cartpole.rollout import collect
from ..cartpole.tasks import CartPoleTask
from ..io.artifacts import artifact_path, load_card
from ..models.ssm import StateSpaceModel
from ..report.progress import progress_bar
from .scoring import episode_returns, random_model, score_row

__all__ = [
    "CARD_MODEL",
    "CARD_CONFIGS",
    "CARD_REPORTED",
    "CARD_TABLE_COLUMNS",
    "card_protocol",
    "card_verdict",
    "card_table",
    "rsi_model_after",
    "RSI_RUN",
    "stable_rows",
]

#: The card's model: ``cartpole_hybrid_real_model`` is an alias of this shipped
#: artifact.
CARD_MODEL = "cartpole_goal_maml"
#: The shipped self-improvement run whose models the card's RSI rows score
#: (chapter 5's climbing run, seed 0).
RSI_RUN = "rsi_goal_climb_s0"
#: The card's adaptation configs: (steps, step size).
CARD_CONFIGS = ((5, 0.01), (10, 0.01), (10, 0.001))
#: The seed card's reported values, as printed there (MODEL_DOCUMENTATION.md).
CARD_REPORTED = {
    "random": "20-30",
    "base": "9.4 ± 0.7",
    "standard": "13.5 ± 1.8",
    "hybrid": "37.8 ± 17.1",
    "rsi_0": "10.0",
    "rsi_1": "22.0",
    "rsi_3": "74.3",
    "dqn": "200-500",
    "ppo": "200-500",
    "parameters": "6,744",
    "training_time": "47 min",
    "convergence": "8.2 → 11.5",
}


#: The columns of ``card_table``.
CARD_TABLE_COLUMNS = (  # the verdict second, so a narrow screen shows it unscrolled
    "card row",
    "verdict",
    "reported",
    "card protocol (mean ± std)",
    "strong protocol, same setting (mean [95% CI], IQM)",
)
#: The order in which `card_table` builds a row's cells.
_CELLS = ("card row", "reported", "card protocol (mean ± std)", "verdict")
#: The card's task-specific peers: (row, key of CARD_REPORTED, key of the peers dict).
CARD_PEERS = (
    ("DQN (task-specific)", "dqn", "sb3_dqn"),
    ("PPO (task-specific)", "ppo", "sb3_ppo"),
)


def _setting(method: str, kind: str = "none", steps: int = 0, lr=None) -> dict:
    """A row's setting, in the strong protocol's form (its `Setting.to_dict`)."""
    return {"method": method, "kind": kind, "steps": steps, "lr": lr}


def rsi_model_after(card: dict, cycles: int) -> str:
    """The model a shipped RSI run used after `cycles` cycles: its last model accepted
    before then, or its start, as a path under ``models/`` without ``.pth``
    (chapter 6)."""
    kept = [entry for entry in card["archive"] if entry["cycle"] < cycles]
    return kept[-1]["path"].removesuffix(".pth")


def card_protocol(
    episodes: int = 20,
    support_episodes: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Every row of the seed card's tables under its own protocol: CartPole-v1,
    `episodes` greedy episodes.

    Adaptation: the card's three configs, each on `support_episodes` sampled episodes of
    the unadapted model; hybrid adds replay (weight 0.5) of the model's own episodes.
    Chapter 6.
    """
    torch.manual_seed(seed)
    task, model = (
        CartPoleTask(),
        StateSpaceModel.load(artifact_path(CARD_MODEL + ".pth")),
    )
    card = load_card(CARD_MODEL)
    rows = [
        score_row(
            "random policy",
            episode_returns(random_model(), task, episodes, seed, greedy=False),
            CARD_REPORTED["random"],
            setting=_setting("random"),
        ),
        score_row(
            "this model, no adaptation",
            episode_returns(model, task, episodes, seed, True),
            CARD_REPORTED["base"],
            setting=_setting("maml"),
        ),
    ]
    support = collect(model, [task], support_episodes, seed=seed + 1)
    buffer = ExperienceBuffer(capacity=256, seed=seed)
    buffer.add(collect(model, [task], 16, seed=seed + 2))
    configs = list(CARD_CONFIGS)
    for steps, lr in progress_bar(configs, enabled=progress, desc="card adaptation"):
        standard = StandardAdapter(
            model, StandardAdaptationConfig(lr=lr, steps=steps)
        ).adapt(support)
        hybrid = HybridAdapter(
            model,
            HybridAdaptationConfig(lr=lr, steps=steps, experience_weight=0.5),
            buffer,
        ).adapt(support)
        rows.append(
            score_row(
                f"standard, {steps} steps at {lr:g}",
                episode_returns(standard, task, episodes, seed, True),
                CARD_REPORTED["standard"],
                config=[steps, lr],
                setting=_setting("maml", "standard", steps, lr),
            )
        )
        rows.append(
            score_row(
                f"hybrid, {steps} steps at {lr:g}",
                episode_returns(hybrid, task, episodes, seed, True),
                CARD_REPORTED["hybrid"],
                config=[steps, lr],
                setting=_setting("maml", "hybrid", steps, lr),
            )
        )
    rsi = load_card(RSI_RUN)
    for cycles in (0, 1, 3):
        m = StateSpaceModel.load(artifact_path(rsi_model_after(rsi, cycles) + ".pth"))
        accepted = sum(c < cycles for c in rsi["accepted_cycles"])
        rows.append(
            score_row(
                f"RSI, {cycles} cycle{'s' * (cycles != 1)}",
                episode_returns(m, task, episodes, seed, True),
                CARD_REPORTED[f"rsi_{cycles}"],
                note=f"{RSI_RUN}'s model after {cycles} cycles ({accepted} accepted)",
                setting={**_setting("rsi"), "cycles": cycles},
            )
        )
    log = card["log"]
    return {
        "what": (
            f"CartPole-v1, {episodes} greedy episodes of {CARD_MODEL} (the card's "
            "model), adaptation on "
            f"{support_episodes} sampled episodes"
        ),
        "model": CARD_MODEL,
        "episodes": episodes,
        "configs": [list(c) for c in CARD_CONFIGS],
        "rows": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "train_seconds": card["train_seconds"],
            "env_steps": card["env_steps"],
            "family": card["train_config"]["family"],
            "epochs_run": card["epochs_run"],
            "first_epoch_return": log["pre_return"][0],
            "last_epoch_return": log["pre_return"][-1],
        },
    }


def _ci(e: dict) -> str:
    return f"{e['mean']:.1f} [{e['low']:.1f}, {e['high']:.1f}]"


def card_verdict(reported, ci: dict) -> str:
    """Chapter 6's one verdict rule: "reproduced" iff the card's reported number lies
    inside our 95% CI `ci` (a reported range such as "20-30": iff the CI overlaps it),
    else "refuted (measured X)"; "not comparable: ..." when the card gives no number.
    """
    text = str(reported or "").strip()
    try:
        if "±" in text:
            low = high = float(text.split("±")[0])
        else:
            parts = text.replace("–", "-").split("-")
            low, high = float(parts[0]), float(parts[-1])
    except ValueError:
        return f"not comparable: the card reports {text or 'no value'!r}, no number"
    if ci["low"] <= high and low <= ci["high"]:
        return "reproduced"
    return f"refuted (measured {ci['mean']:.1f})"


def _same_setting(setting: dict | None, strong: dict | None) -> str:
    """The strong row of exactly `setting` (its own, or one it says it also is)."""
    if not setting:
        return "not comparable: the card row records no setting"
    for row in (strong or {}).get("rows", []):
        if setting == row.get("setting") or setting in row.get("also", []):
            return f"{row['name']}: {_ci(row['ci'])}, IQM {_ci(row['iqm'])}"
    return "no matching setting"


def stable_rows(live: list[dict], shipped: list[dict]) -> list[dict]:
    """Whether each live card-protocol row agrees with the shipped one: "stable" iff
    the live mean lies inside the shipped 95% CI (chapter 6). This says the shipped
    numbers are re-measurable here, nothing about the card: never "reproduced"."""
    old = {row["name"]: row for row in shipped}
    out = []
    for row in live:
        before = old.get(row["name"])
        mean = row["ci"]["mean"]
        if before is None:
            word = "not comparable: no shipped row of this name"
        elif before["ci"]["low"] - 1e-9 <= mean <= before["ci"]["high"] + 1e-9:
            word = "stable"
        else:
            word = f"changed (live {mean:.1f}, shipped {_ci(before['ci'])})"
        out.append({"name": row["name"], "live": mean, "stable": word})
    return out


def _table_row(cells: tuple) -> dict:
    """A row keyed in `CARD_TABLE_COLUMNS` order from cells in `_CELLS` order, then
    the strong column."""
    named = dict(zip(_CELLS + CARD_TABLE_COLUMNS[-1:], cells))
    return {column: named[column] for column in CARD_TABLE_COLUMNS}


def card_table(
    card: dict, strong: dict | None, peers: dict | None = None, live=None
) -> list[dict]:
    """The card's table matched setting for setting (chapter 6): one row per card row
    with ``CARD_TABLE_COLUMNS`` (and "live re-run" when `live` card rows are given).

    `card`, `strong`: the benchmark's sections. A strong row is named only where its
    setting is the card row's (``"no matching setting"`` otherwise). `peers`:
    ``{"sb3_dqn": {"final": {"mean", "low", "high"}, "seeds", "budget"}, "sb3_ppo":
    ...}`` or None (then its cells say "–").
    """
    stable = (
        {r["name"]: r["stable"] for r in stable_rows(live, card["rows"])}
        if live
        else {}
    )
    rows = []
    for row in card["rows"]:
        std, ci = row["std"], row["ci"]
        cells = (
            row["name"],
            row["reported"],
            f"{std['mean']:.1f} ± {std['std']:.1f}, CI [{ci['low']:.1f}, "
            f"{ci['high']:.1f}]",
            card_verdict(row["reported"], ci),
            _same_setting(row.get("setting"), strong),
        )
        rows.append(_table_row(cells))
        if live:
            rows[-1]["live re-run"] = stable.get(row["name"], "–")
    for name, key, peer in CARD_PEERS:
        final = ((peers or {}).get(peer) or {}).get("final")
        measured, verdict = "–", "not comparable: no DQN/PPO run given"
        if final:
            p = peers[peer]
            measured = f"{_ci(final)} (SB3, {p['seeds']} seeds, {p['budget']:,} steps)"
            verdict = card_verdict(CARD_REPORTED[key], final)
        cells = (name, CARD_REPORTED[key], measured, verdict, "no matching setting")
        rows.append(_table_row(cells))
        if live:
            rows[-1]["live re-run"] = "–"
    return rows
