"""Training, the model registry and scoring."""
