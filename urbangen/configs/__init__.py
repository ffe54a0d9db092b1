"""Experiment configs, one module per model with ``get_config(variant)`` (ml_collections), as in Flax's examples.

Read them with :func:`experiment_config`, or give ``experiments/configs/MODEL.py[:VARIANT]`` (thin files
that import these) to ``experiments/train.py``. Each starts from :func:`urbangen.configs._base.base_config`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import ml_collections

from data_pipeline.errors import InvalidValueError


def experiment_config(model: str, variant: str = "", **overrides: Any) -> ml_collections.ConfigDict:
    """:mod:`urbangen.configs`'s ``MODEL.get_config(variant)`` with dotted-key overrides.

    This is the config ``experiments/train.py --config experiments/configs/MODEL.py:VARIANT
    --config.KEY=VALUE`` builds, for code that trains without the command line (the
    quickstart, tests, benchmarks). The configs are package modules, so an
    installed urbangen (editable or not) has them.
    """
    known = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    if model not in known:
        raise InvalidValueError(f"no experiment config {model!r}; there are {', '.join(known)}")
    config = importlib.import_module(f"{__name__}.{model}").get_config(variant)
    config.update_from_flattened_dict(overrides)  # type-checked as --config.KEY=VALUE is
    return config
