"""Test-time adaptation: gradient adapters, the experience buffer, in-context
adaptation.

``adapters`` holds the experience buffer and the standard and hybrid (replay) adapters;
``in_context`` trains and evaluates a policy that adapts through its hidden state with
no gradient step; ``cli`` is ``python -m ssm_metarl incontext``. Chapter 4.
"""
