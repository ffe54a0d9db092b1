"""Trainers: one task module per model, a shared loop, checkpoints, logging and data splits."""
