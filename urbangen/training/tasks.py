"""The trainable models by name, and :func:`train`: the entry point of every experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from data_pipeline.errors import InvalidValueError, MissingFileError
from urbangen.checkpoints import Checkpointer
from urbangen.training.encoder import EncoderTask
from urbangen.training.loop import Task, ValScorerFactory, fit
from urbangen.training.pix2pix import Pix2PixTask
from urbangen.training.vae import VAETask

TASKS: dict[str, type[Task]] = {"pix2pix": Pix2PixTask, "vae": VAETask, "encoder": EncoderTask}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise InvalidValueError(f"unknown model {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


def train(config: ml_collections.ConfigDict, workdir: str | Path, *,
          val_scorers: Sequence[ValScorerFactory] = ()) -> dict[str, Any]:
    """Train ``config.model`` in ``workdir`` (resuming when it holds checkpoints); ``val_scorers`` as in ``fit``."""
    return fit(task_class(config.model), config, workdir, val_scorers=val_scorers)


def load_trained(workdir: str | Path, step: int | None = None, *, best: bool = False) -> tuple[Task, dict, dict]:
    """The task, train state and metadata of a run's checkpoint.

    Parameters
    ----------
    workdir
        The run directory given to ``train``.
    step
        Which checkpoint; default the latest, or the best by the validation
        metric when ``best``.
    """
    import jax

    checkpointer = Checkpointer(Path(workdir) / "checkpoints")
    try:
        if step is None:
            step = checkpointer.best_step() if best else checkpointer.latest_step()
            if step is None and best:  # no metrics recorded: fall back to the latest
                step = checkpointer.latest_step()
        if step is None:
            raise MissingFileError(f"no checkpoint in {Path(workdir) / 'checkpoints'}")
        meta = checkpointer.restore_meta(step)
        config = ml_collections.ConfigDict(meta["config"])
        task = task_class(config.model)(config, meta["spec"])
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            jax.eval_shape(task.init_state, jax.random.key(0)))
        state, meta = checkpointer.restore(like, step)
    finally:
        checkpointer.close()
    return task, state, meta
