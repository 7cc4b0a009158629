"""Training pieces the recipe engine composes: optimizers, schedules, precision and XLA policy,
callbacks, checkpoints, distribution and plots. The entry point is ``restransfer.train``."""
