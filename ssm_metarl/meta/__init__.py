"""Meta-learning: model-agnostic MAML, MAML for RL, the meta-training run, sine
regression.

``maml`` is MAML on ``torch.func`` for any loss (first and second order); ``maml_rl``
holds the MAML-RL losses, task batches and adaptation evaluation; ``training`` the
resumable meta-training run; ``sine`` the sine-regression benchmark of Finn et al.
(2017). Chapter 3.
"""
