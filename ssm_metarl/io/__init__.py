"""The floor under every chapter: argument checks, safe torch files, checkpoints,
artifacts.

``validation`` holds the argument checks every config shares; ``torchfile`` reads a
``.pth`` file's pickle as opcodes and never runs it; ``checkpoint`` saves and loads
weights-only checkpoints, ``checkpoint_errors`` names how one can fail, ``atomic``
writes files (and a model with its JSON card) whole or not at all; ``artifacts`` finds
the shipped models in ``models/`` from anywhere a chapter runs. Used by chapters 0-7
and the appendix.
"""
