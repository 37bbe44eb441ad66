"""Benchmarks: speed measured side by side, and the model card re-measured.

``speed`` is ``python -m ssm_metarl bench {ssm,rollout,rl,maml}``, collecting the speed
benchmarks chapters 1-3 show (``speed_ssm``, ``speed_cartpole``, ``speed_maml``);
``speed_section`` runs them small for chapter 6's table. ``card_protocol`` and
``strong_protocol`` are the card's and the strong evaluation protocols, ``scoring``
how both score an agent, ``rliable_stats`` the IQM and probability of improvement;
``peers`` the Stable-Baselines3 peers on CartPole-v1, ``peers_tasks`` the same on
test tasks, ``time_to_solve`` our PPO's time to solve against SB3's; ``plots`` the
figures, ``results`` the results file and its tables, and ``cli`` the
``python -m ssm_metarl benchmark`` command that writes them. Chapter 6.
"""
