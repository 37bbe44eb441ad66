"""The networks: the model card's neural SSM, chapter 1's diagonal SSM, and the
policies.

``ssm`` is the card's ``StateSpaceModel`` (its equations once); ``s4d`` is chapter 1's
linear diagonal SSM (discretisation, scan, FFT); ``policy`` is the one policy interface
every rollout and loss uses, with its implementations. Chapters 1, 2 and 4.
"""
