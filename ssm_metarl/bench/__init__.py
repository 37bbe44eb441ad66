"""Benchmarks: speed measured side by side, the model card re-measured, and its peers.

``speed`` is ``python -m ssm_metarl bench {ssm,rollout,rl,maml}``, collecting the speed
benchmarks chapters 1-3 show (``speed_ssm``, ``speed_cartpole``, ``speed_maml``);
``speed_section`` runs them small for chapter 6's tables. ``card_protocol`` is the
card's own protocol and its table matched setting for setting; ``strong_protocol`` and
``strong_rows`` the same settings on goal test tasks over the replicated models;
``scoring`` how both score an agent, ``rliable_stats`` the IQM and probability of
improvement (rliable). The peers run: ``peers`` (RL Zoo's settings for SB3),
``play`` (one scoring function for every agent), ``peer_runs`` (one training run),
``peers_study`` and ``peers_cli`` (``python -m ssm_metarl peers``), ``peers_report``,
``peers_markdown`` and ``peers_plots`` (its tables and figures). ``plots`` and
``results`` make the benchmark's figure, tables and README section, and ``cli`` is
``python -m ssm_metarl benchmark``. Chapter 6.
"""
