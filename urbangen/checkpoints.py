"""Orbax checkpoints: periodic, keep the latest N and the best by a validation metric.

Each checkpoint holds the train state (parameters, optimizer state, step,
RNG key) and a JSON ``meta`` item: the config, the parameter scaler, the
dataset's channels and scale, and the data position. Orbax writes each step
to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from data_pipeline.errors import MissingFileError


class Checkpointer:
    """Save and restore train states under ``directory``.

    Parameters
    ----------
    directory
        Where step directories go (``WORKDIR/checkpoints``).
    keep
        How many of the latest checkpoints to keep.
    best_metric
        Metric (in the metrics passed to :meth:`save`) whose best
        checkpoint is kept as well; ``best_mode`` says whether lower or
        higher is better.
    """

    def __init__(self, directory: str | Path, keep: int = 3, best_metric: str | None = None,
                 best_mode: str = "min") -> None:
        self.directory = Path(directory).absolute()
        keep_policies: list[Any] = [policies.LatestN(n=keep)]
        if best_metric:
            keep_policies.append(policies.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                                                n=1, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep_policies), create=True,
            cleanup_tmp_directories=True,
            best_fn=(lambda m: m[best_metric]) if best_metric else None, best_mode=best_mode)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        self.best_metric = best_metric

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Save ``state`` at ``step`` (asynchronously; :meth:`wait` blocks until written)."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)),
                          metrics=metrics or None, force=True)

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restore the state at ``step`` (default latest) into the structure and shardings of ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise MissingFileError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                                like)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        """Only the JSON metadata (cheap: no arrays are read)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise MissingFileError(f"no checkpoint in {self.directory}")
        return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
