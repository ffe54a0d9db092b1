"""Experiment configs, one module per model with ``get_config(variant)`` (ml_collections), as in Flax's examples.

Read them with :func:`urbangen.training.config.experiment_config`, or give
``experiments/configs/MODEL.py[:VARIANT]`` (thin files that import these) to ``experiments/train.py``.
"""
