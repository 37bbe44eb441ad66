"""Test-time adaptation: gradient adapters, the experience buffer, in-context
adaptation.

``adapters`` holds the standard and hybrid (replay) adapters, ``buffer`` the experience
buffer they replay from; ``in_context`` trains (with the PPO loop of ``rl``) and
evaluates a policy that adapts through its hidden state with no gradient step; ``cli``
is ``python -m ssm_metarl incontext``. Chapter 4.
"""
