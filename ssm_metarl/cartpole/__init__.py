"""CartPole as a family of tasks: tasks and splits, Gymnasium environments, batched
rollouts.

``tasks`` (a task, the families and their splits), ``envs`` (the registered Gymnasium
environments and the step-for-step check against Gymnasium's own CartPole), ``rollout``
(batched episodes and evaluation) and ``animation`` (an episode drawn as a GIF).
Chapters 0 and 2; every later chapter plays on these tasks.
"""
