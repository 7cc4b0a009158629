"""Training pieces the recipe engine composes: optimizers, schedules, precision, callbacks."""
