"""Temporary driver of chapter 7's memory study (the `memory` command replaces it)."""
import json
import sys
import time

from ssm_metarl.bench.memory_study import TASKS, plan, run_unit
from ssm_metarl.protocol.runner import in_processes

if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "models/memory"
    start = time.perf_counter()
    units = plan()
    cards = in_processes([(run_unit, u, root) for u in units], workers=2)
    summary = {"command": "python run_memory_study.py " + root, "tasks": TASKS,
               "units": [c["name"] for c in cards], "wall_seconds": time.perf_counter() - start,
               "run_seconds": sum(c["seconds"] for c in cards)}
    with open(f"{root}/study.json", "w") as f:
        json.dump(summary, f, indent=1)
    print("done", summary["wall_seconds"])
