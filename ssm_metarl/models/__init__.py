"""The networks: the model card's neural SSM, chapter 1's diagonal SSM, and the
policies.

``ssm`` is the card's ``StateSpaceModel`` (its equations once), saved and loaded with
its config by ``checkpointed``; ``s4d`` is chapter 1's linear diagonal SSM layer
(recurrence, chunked scan, FFT), built on ``linear_recurrence`` (discretisation,
parallel scan) and timed by ``s4d_speed``; ``policy`` is the one policy interface every
rollout and loss uses, with its implementations; ``controllers`` the fixed goal
controllers (oracle and goal-blind) every goal result is measured against. Chapters 1-4.
"""
