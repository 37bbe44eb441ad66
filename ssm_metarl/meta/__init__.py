"""Meta-learning: model-agnostic MAML, MAML for RL, the meta-training run, sine
regression.

``maml`` is MAML on ``torch.func`` for any loss (first and second order) and
``per_task`` the per-task weights and task batches it works over; ``maml_rl`` holds the
MAML-RL config, task batches and loss, ``evaluation`` the held-out tasks, adaptation
evaluation and the cards' protocol; ``training`` the meta-training run and
``run_state`` what it saves to resume; ``sine`` the sine-regression benchmark of Finn
et al. (2017); ``cli`` the ``python -m ssm_metarl train`` command. Chapter 3.
"""
