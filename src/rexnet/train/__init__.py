"""Training and evaluation: datasets, recipes, the engine and resumable checkpoints."""
