"""The trainable models by name, and :func:`train`: the entry point of every experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from urbangen.training.loop import Task, fit
from urbangen.training.pix2pix import Pix2PixTask

TASKS: dict[str, type[Task]] = {"pix2pix": Pix2PixTask}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Train ``config.model`` in ``workdir`` (resuming when it holds checkpoints)."""
    return fit(task_class(config.model), config, workdir)
