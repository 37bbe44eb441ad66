"""Recursive self-improvement: the agent, the Optuna search, the commands. Chapter 5.

The loop: ``agent`` (evaluate, propose, accept only CI-separated gains, roll back,
resume), ``decision`` (the acceptance rule), ``search`` (what is proposed, how a
candidate is trained and scored), ``verify`` (what a worker reports, checked and
re-scored before acceptance), ``run`` and ``state`` (a run's identity and its state,
saved as one unit). The machinery that spreads it over processes and machines:
``storage`` (journal file, PostgreSQL, SQLite; passwords masked), ``study`` (the shared
Optuna study), ``session`` (heartbeats, one coordinator per study), ``worker`` and
``watch`` (the worker's loop and the coordinator's watch over a round). The commands:
``cli`` (``python -m ssm_metarl rsi`` and ``rsi-worker``), ``checks`` (every flag
checked before any work), ``messages`` (what they print), ``ship`` (the final model and
its card).
"""
