"""The floor under every chapter: argument checks, safe torch files, checkpoints,
artifacts.

``validation`` holds the argument checks every config shares; ``torchfile`` reads a
``.pth`` file's pickle as opcodes and never runs it; ``checkpoint`` saves and loads
atomic, weights-only checkpoints with their JSON cards; ``artifacts`` finds the shipped
models in ``models/`` from anywhere a chapter runs. Used by chapters 0-7 and the
appendix.
"""
