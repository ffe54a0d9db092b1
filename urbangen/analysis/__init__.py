"""Latent-space comparison of cities and groups of cities."""
