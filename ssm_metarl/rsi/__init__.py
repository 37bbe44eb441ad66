"""Recursive self-improvement: the agent, the Optuna search, the commands. Chapter 5.

The loop: ``agent`` (evaluate, propose, accept only significant gains, roll back,
resume), ``decision`` (the acceptance rule) and ``gate`` (its tests), ``search`` (what
is proposed, how a candidate trains on from the current weights and is scored),
``verify`` (what a worker reports, checked and re-scored before acceptance), ``run``
and ``state`` (a run's identity and its state, saved as one unit). The machinery that
spreads it over processes and machines: ``storage`` (journal file, PostgreSQL, SQLite;
passwords masked), ``study`` (the shared Optuna study), ``session`` (heartbeats, one
coordinator per study), ``worker`` and ``watch`` (the worker's loop and the
coordinator's watch over a round). The commands: ``cli`` (``python -m ssm_metarl rsi``
and ``rsi-worker``), ``checks`` (every flag checked before any work), ``messages``
(what they print), ``ship`` (the final model and its card). The measurements around
the loop: ``measure_cli`` (``rsi-gate`` runs ``gate_study``, the tests on identical
models; ``rsi-baseline`` runs ``baseline``, the same compute spent on plain training)
and ``climb`` (what a shipped run did).
"""
