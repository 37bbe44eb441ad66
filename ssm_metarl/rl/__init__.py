"""Policy gradients: the losses and the training loops.

``losses`` holds the maths (returns, GAE, advantages, REINFORCE and PPO losses, the
update guard); ``loops`` holds the one REINFORCE and the one PPO training loop, in
CleanRL's linear style, with their settings in ``configs``, the tasks each batch plays
in ``batches`` (in order, or by flip world), and when a run stops and which weights it
keeps in ``stopping`` (greedy solve check, budgets, best on validation). Chapter 2
teaches them; chapter 4 trains its in-context policy with the PPO loop's options,
chapter 6 reuses it.
"""
