"""Training: corpus synthesis, datasets, training loops and evaluation."""
