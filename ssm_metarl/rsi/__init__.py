"""Recursive self-improvement: the agent, the Optuna search, the commands.

``search`` defines the search space, the shared Optuna study and the workers;
``agent`` runs the loop (evaluate, propose, accept only CI-separated gains, roll back,
resume); ``cli`` is ``python -m ssm_metarl rsi`` and ``rsi-worker``. Chapter 5.
"""
