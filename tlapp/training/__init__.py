"""Training: the run (``tlapp.training.run.train``), callbacks, checkpoints, embedding cache, reports, devices."""
