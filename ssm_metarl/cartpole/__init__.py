"""CartPole as a family of tasks: tasks and splits, Gymnasium environments, batched
rollouts.

``tasks`` (a task, the families and their splits), ``task_sets`` (the named sets every
comparison is scored on: validation, test and held-out regions, with each task's
strata), ``envs`` (the registered Gymnasium
environments and the step-for-step check against Gymnasium's own CartPole), ``rollout``
(batched episodes and evaluation) returning ``trajectories``, ``rollout_speed`` (the
card's naive loop against batched rollouts) and ``animation`` (an episode as a GIF).
Chapters 0 and 2; every later chapter plays on these tasks.
"""
