"""The results store: every replicated measurement in one file, `models/results.json`,
and the one way chapters read it (chapters 3-6).

`build_store` gathers the study's cards and per-model measurements into the store;
`Results` reads it. A chapter never recomputes a shared quantity its own way: it asks
`Results` for the (runs, tasks) matrix or for the estimate with its two-level CI, so
every chapter states the same value. A chapter that re-runs one model live compares
its numbers with the store's (`Results.check_live`). Taught in chapter 3
(`book/03_maml.md`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..report.stats import Estimate, bootstrap_ci
from ..report.two_level import iqm_of_runs, two_level_ci, two_level_difference

__all__ = ["Results", "STORE_NAME"]

#: The store's file name in `models/`.
STORE_NAME = "results.json"


class Results:
    """The results store, read (chapters 3-6). `data` is the JSON document; the methods
    below are the questions chapters ask of it."""

    def __init__(self, data: dict):
        for key in ("goal", "task_sets", "references", "in_context"):
            if key not in data:
                raise ValueError(
                    f"results store has no {key!r} section: rebuild it with "
                    "`python -m ssm_metarl replicate`"
                )
        self.data = data

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Results":
        """The store at `path` (default: `models/results.json`)."""
        from ..io.artifacts import artifact_path

        path = Path(path) if path is not None else artifact_path(STORE_NAME)
        try:
            return cls(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"results store {path} is not valid JSON: {exc}") from None

    def _stratum(self, family: str, set_name: str, band: str | None) -> np.ndarray:
        strata = self.data["task_sets"][family][set_name]["strata"]
        n = len(next(iter(strata.values())))
        if band is None:
            return np.arange(n)
        found = np.flatnonzero(np.array(strata["band"]) == band)
        if found.size == 0:
            raise ValueError(f"no task of {family}/{set_name} is in band {band!r}")
        return found

    def matrix(
        self, family: str, method: str, set_name="test", k: int = 1, band=None
    ) -> np.ndarray:
        """Returns after `k` steps: a (runs, tasks) matrix, optionally one band's
        tasks."""
        try:
            runs = self.data["goal"][family][method][set_name][str(k)]
        except KeyError:
            raise ValueError(
                f"the store has no {family}/{method}/{set_name} after {k} step(s); "
                f"families: {sorted(self.data['goal'])}"
            ) from None
        return np.asarray(runs)[:, self._stratum(family, set_name, band)]

    def estimate(self, family, method, set_name="test", k=1, band=None) -> Estimate:
        """Mean over runs and tasks with its two-level 95% CI."""
        return two_level_ci(self.matrix(family, method, set_name, k, band))

    def iqm(self, family, method, set_name="test", k=1, band=None) -> float:
        """The interquartile mean of the runs' means."""
        return iqm_of_runs(self.matrix(family, method, set_name, k, band))

    def margin(
        self, family, a: str, b: str, set_name="test", k=1, band=None, k_b=None
    ) -> Estimate:
        """Method a after k steps minus method b after `k_b` (default k) steps, paired
        by task, each method's runs resampled on their own."""
        return two_level_difference(
            self.matrix(family, a, set_name, k, band),
            self.matrix(family, b, set_name, k if k_b is None else k_b, band),
        )

    def reference(self, family, label: str, set_name="test", band=None) -> Estimate:
        """A fixed controller ("oracle" or "goal-blind"): mean with a CI over tasks."""
        values = np.asarray(self.data["references"][family][set_name][label])
        return bootstrap_ci(values[self._stratum(family, set_name, band)])

    def in_context(self, set_name: str, mode="greedy", world=None) -> Estimate:
        """The in-context policies (no gradient step) on a set, one world or both."""
        section = self.data["in_context"]
        runs = np.asarray(section[set_name][mode])
        if world is not None:
            worlds = np.array(section["worlds"][set_name])
            runs = runs[:, worlds == world]
        return two_level_ci(runs)

    def card(self, key: str):
        """A value of the study's own record: "command", "wall_seconds", "tuned"..."""
        return self.data["study"][key]

    def check_live(self, live, family, method, run: int, set_name="test", k=1):
        """Compare a live re-run of run `run` (per-task returns) with the store: returns
        (live mean, stored Estimate for that run, CI over tasks). Raises if the live
        mean falls outside the stored run's interval."""
        stored = bootstrap_ci(self.matrix(family, method, set_name, k)[run])
        mean = float(np.mean(live))
        if not stored.low <= mean <= stored.high:
            raise AssertionError(
                f"live {family}/{method} run {run} scores {mean:.1f}, outside the "
                f"store's {stored}; rebuild the store with `python -m ssm_metarl "
                "replicate`"
            )
        return mean, stored
