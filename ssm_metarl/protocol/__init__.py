"""The evaluation protocol and the replication study behind every comparison in
chapters 3-6: the study's plan and training runs, named task sets scored run by run,
the results store in ``models/results.json``, and the chapter-4 experiments that need
several seeds (retention on task sequences, PPO from scratch per goal band)."""
