"""Evaluation of generated tiles against real ones: distances between embedding sets and their uncertainty."""
