"""How the book reports what it measured: statistics, timing, progress, tables and
figures.

``stats`` (bootstrap CIs, paired differences, verdict words), ``timing`` (interleaved
rounds and speed-ups with a CI), ``progress`` (progress bars and log rows), ``display``
(glue and rendered tables) and ``plotting`` (the book's figure style and CI plots).
Used by chapters 0-7; taught where first used, in chapters 0 and 1.
"""
