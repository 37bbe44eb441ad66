"""Policy gradients: the losses and the training loops.

``losses`` holds the maths (returns, GAE, advantages, REINFORCE and PPO losses, the
update guard); ``loops`` holds the one REINFORCE and the one PPO training loop, in
CleanRL's linear style. Chapter 2 teaches them; chapters 4 and 6 reuse the PPO loop.
"""
