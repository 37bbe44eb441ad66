"""Benchmarks: speed measured side by side, and the model card re-measured.

``speed`` is ``python -m ssm_metarl bench {ssm,rollout,rl,maml}``, the speed
benchmarks chapters 1-3 show; ``speed_table`` runs them small for chapter 6's table.
``protocols`` holds the card's and the strong evaluation protocols, ``peers`` the
Stable-Baselines3 peers, ``plots`` the figures and ``cli`` the ``python -m ssm_metarl
benchmark`` command that writes the results. Chapter 6.
"""
