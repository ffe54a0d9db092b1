"""The training loop shared by every model.

A task (:mod:`urbangen.training.pix2pix`, ``vae``, ``encoder``) says how to
initialise its state, what one train step and one eval step compute, and how
to draw samples; this loop does the rest, top to bottom: open and split the
data, build the mesh, restore the latest checkpoint, then step, log, check
for NaN, evaluate, checkpoint and stop early.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from data_pipeline.errors import InvalidValueError, NonFiniteLossError
from urbangen.conditioning import ParameterScaler
from urbangen.settings import progress_disabled
from urbangen.splits import ensure_same_split
from urbangen.training.checkpoints import Checkpointer
from urbangen.training.data import TrainingData
from urbangen.training.logging import RunLogger
from urbangen.training.optim import adam, learning_rate_schedule
from urbangen.training.parallel import (
    batch_sharded,
    local_batch_size,
    make_mesh,
    maybe_initialize_distributed,
    replicate,
    replicated,
    to_global,
)


class Task:
    """What a model's trainer provides to :func:`fit`; subclasses build the model in ``__init__``.

    Subclasses set ``name``, ``best_metric`` (a validation metric, lower is
    better) and ``headline`` (train metrics for the progress bar), and write
    ``init_state``, ``train_step``, ``eval_step`` and ``sample_grid``.
    """

    name: str
    best_metric: str
    headline: tuple[str, ...]

    def __init__(self, config: ml_collections.ConfigDict, spec: dict[str, Any]) -> None:
        self.config = config
        self.channels = list(spec["channels"])
        self.tile_px = int(spec["tile_px"])
        self.n_params = len(spec["parameters"])
        self.dtype = jnp.bfloat16 if config.precision == "bfloat16" else jnp.float32
        self.tx = adam(config.optim, config.num_steps)
        self.schedule = learning_rate_schedule(config.optim, config.num_steps)

    def learning_rate(self, step: int) -> float:
        return float(self.schedule(step))

    def jit(self, method: str, **jit_kwargs) -> Any:
        """``jax.jit`` of one of this task's methods, compiled once and reused (sampling, generation, embedding)."""
        cache = self.__dict__.setdefault("_jitted", {})
        if method not in cache:
            cache[method] = jax.jit(getattr(self, method), **jit_kwargs)
        return cache[method]

    def step_rng(self, state: dict[str, Any]) -> jax.Array:
        """This step's key: the run's key folded with the step, so a resumed run draws the same numbers."""
        return jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    def apply_gradients(self, state: dict[str, Any], loss_fn) -> tuple[dict[str, Any], dict]:
        """One optimizer step on ``state["params"]`` for ``loss_fn(params) -> (loss, metrics)``."""
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt = self.tx.update(grads, state["opt"], state["params"])
        return {**state, "step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                "opt": opt}, metrics

    def init_state(self, rng: jax.Array) -> dict[str, Any]:
        raise NotImplementedError

    def train_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict]:
        raise NotImplementedError

    def eval_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        raise NotImplementedError

    def sample_grid(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> np.ndarray:
        raise NotImplementedError


def _progress(disable: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=disable or progress_disabled())


def _check_finite(rows: list[dict[str, float]], first_step: int, checkpointer: Checkpointer) -> None:
    for offset, row in enumerate(rows):
        bad = [k for k, v in row.items() if not np.isfinite(v)]
        if bad:
            last = checkpointer.latest_step()
            where = (f"the last good checkpoint is step {last} in {checkpointer.directory}; rerun the same "
                     "command with a lower learning rate to resume from it") if last is not None else \
                "no checkpoint had been written yet"
            raise NonFiniteLossError(f"{', '.join(bad)} became non-finite at step {first_step + offset}; "
                                     f"stopped without saving: {where}")


def fit(task_cls: type[Task], config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Train ``task_cls`` as ``config`` says, in ``workdir``, resuming from its latest checkpoint.

    Returns
    -------
    dict
        ``step`` reached, ``best_step``, the last training and validation
        metrics, and ``stopped_early``.
    """
    maybe_initialize_distributed(config.get("distributed", False))
    workdir = Path(workdir).absolute()
    is_main = jax.process_index() == 0
    mesh = make_mesh()

    # Data: a resumed run reuses the scaler its checkpoint was trained with.
    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints, best_metric=task_cls.best_metric)
    resumed_meta = checkpointer.restore_meta() if checkpointer.latest_step() is not None else None
    scaler = ParameterScaler.from_dict(resumed_meta["spec"]["scaler"]) if resumed_meta else None
    data = TrainingData.open(config.dataset, parameters=tuple(config.parameters), val_fraction=config.val_fraction,
                             test_fraction=config.test_fraction, buffer_m=config.split_buffer_m, seed=config.seed,
                             scaler=scaler, buildings_known_only=config.buildings_known_only)
    if resumed_meta is not None:
        # A resumed run must train, validate and leave out exactly the tiles it did before.
        if "split" in resumed_meta:
            ensure_same_split(resumed_meta["split"], data.split)
        elif is_main:
            Console(stderr=True).print("[yellow]the checkpoint records no train/val/test split (written before "
                                       "splits were recorded): resuming with the split the config gives now")
    task = task_cls(config, data.spec)

    # State: fresh, or restored with its step, RNG key and optimizer state.
    state = replicate(task.init_state(jax.random.key(config.seed)), mesh)
    start = 0
    if resumed_meta is not None:
        try:
            state, _ = checkpointer.restore(state)
        except Exception as err:  # noqa: BLE001 - a shape mismatch reads badly from orbax; say what it means
            raise InvalidValueError(f"the checkpoint in {checkpointer.directory} does not fit this config's model "
                             f"(was the model config changed?): {err}") from err
        start = int(resumed_meta["step"])
    # best_metric lets inference pick the best checkpoint without the trainer (urbangen.inference).
    meta = {"task": task.name, "best_metric": task.best_metric, "config": config.to_dict(), "spec": data.spec,
            "dataset": str(config.dataset),
            "train_tiles": int(len(data.train_indices)), "val_tiles": int(len(data.val_indices)),
            "test_tiles": int(len(data.test_indices)), "split": data.split_record}

    logger = RunLogger(workdir, config.to_dict(), config.wandb.to_dict(), is_main=is_main)
    logger.truncate_after(start)

    # Batches: batch k of the training stream is the same whether or not the run was interrupted.
    host_batch = local_batch_size(config.batch_size, mesh)
    shard = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
    train_batches = data.batches("train", host_batch, seed=config.seed, training=True, **shard)
    n_dev = mesh.devices.size
    val_batch = min(config.batch_size, (len(data.val_indices) // n_dev) * n_dev)
    val_batches = data.batches("val", val_batch // jax.process_count(), training=False, **shard) if val_batch else None
    eval_batches = [] if val_batches is None else \
        [to_global(val_batches[i], mesh) for i in range(min(len(val_batches), config.eval_batches))]
    if not eval_batches:
        Console(stderr=True).print("[yellow]no validation tiles: no evaluation, early stopping or best checkpoint")

    step_fn = jax.jit(task.train_step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                      out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)
    eval_fn = jax.jit(task.eval_step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                      out_shardings=replicated(mesh))

    def evaluate(state) -> dict[str, float]:
        rows = jax.device_get([eval_fn(state, b) for b in eval_batches])
        return {f"val/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}

    conditioning = _conditioning_evaluator(config, data)

    pending: list[dict[str, jax.Array]] = []
    train_metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}
    best, evals_without_gain, stopped_early = np.inf, 0, False
    tic, images_since = time.perf_counter(), 0
    stream = iter(train_batches[start:config.num_steps].to_iter_dataset(
        grain.ReadOptions(num_threads=config.loader_threads, prefetch_buffer_size=config.loader_prefetch)))
    done = start
    with _progress(not is_main) as progress:
        bar = progress.add_task(f"train {task.name}", total=config.num_steps, completed=start, status="")
        tenth = max(1, config.num_steps // 10)
        try:
            for step in range(start, config.num_steps):
                state, metrics = step_fn(state, to_global(next(stream), mesh))
                pending.append(metrics)
                done = step + 1
                images_since += config.batch_size
                at_eval = bool(eval_batches) and (done % config.eval_every == 0 or done == config.num_steps)
                if done % config.log_every == 0 or at_eval or done == config.num_steps:
                    rows = [{k: float(v) for k, v in r.items()} for r in jax.device_get(pending)]
                    _check_finite(rows, done - len(rows) + 1, checkpointer)
                    pending = []
                    elapsed = time.perf_counter() - tic
                    train_metrics = {f"train/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}
                    logger.log(done, {**train_metrics, "train/learning_rate": task.learning_rate(done),
                                      "perf/img_per_s": images_since / elapsed, "perf/step_s": elapsed / len(rows)})
                    tic, images_since = time.perf_counter(), 0
                    progress.update(bar, status=" ".join(f"{k}={train_metrics['train/' + k]:.3g}" for k in task.headline
                                                              if "train/" + k in train_metrics))
                if at_eval:
                    val_metrics = evaluate(state)
                    logger.log(done, val_metrics)
                    scores = conditioning(state, data.spec, done) if conditioning is not None and is_main else {}
                    if scores:
                        logger.log(done, scores)
                    checkpointer.save(done, state, {**meta, "step": done}, metrics=val_metrics)
                    current = val_metrics[task.best_metric]
                    best, evals_without_gain = (current, 0) if current < best else (best, evals_without_gain + 1)
                    if config.early_stopping_patience and evals_without_gain >= config.early_stopping_patience:
                        stopped_early = True
                if config.sample_every and done % config.sample_every == 0 and eval_batches:
                    logger.log_image(done, "samples", task.sample_grid(state, eval_batches[0]),
                                     caption="condition | generated | real")
                    tic = time.perf_counter()  # sampling is not training throughput
                progress.update(bar, completed=done)
                if not progress.live.console.is_terminal and not progress.disable and done % tenth == 0:
                    # A log file gets no live bar: a line every tenth of the run instead.
                    progress.console.print(f"train {task.name}: step {done}/{config.num_steps} "
                                           + progress.tasks[0].fields.get("status", ""))
                if stopped_early:
                    break
            if not eval_batches or checkpointer.latest_step() != done:
                checkpointer.save(done, state, {**meta, "step": done})
            checkpointer.wait()
            best_step = checkpointer.best_step()
        except KeyboardInterrupt:
            # Keep what was learned: save where we are unless the state may already be bad.
            rows = [{k: float(v) for k, v in r.items()} for r in jax.device_get(pending)]
            if all(np.isfinite(list(r.values())).all() for r in rows) and checkpointer.latest_step() != done:
                checkpointer.save(done, state, {**meta, "step": done})
            raise
        finally:
            checkpointer.close()
            logger.finish()
    return {"step": done, "best_step": best_step, "train": train_metrics, "val": val_metrics,
            "stopped_early": stopped_early}


def _conditioning_evaluator(config: ml_collections.ConfigDict, data: TrainingData):
    """The conditioning evaluator on ``config.eval_conditioning_tiles`` validation tiles, or None when off.

    It scores the weights being trained through the same predict functions
    as ``urbangen evaluate`` (:func:`urbangen.inference.model_from_state`),
    on validation tiles: test tiles stay unseen until the reported evaluation.
    """
    n = int(config.get("eval_conditioning_tiles", 0))
    if not n or len(data.val_indices) == 0:
        return None
    from urbangen.evaluators.common import read_real, sample_rows
    from urbangen.evaluators.conditioning import Conditioning
    from urbangen.inference import model_from_state

    rows = data.val_indices[sample_rows(len(data.val_indices), n, np.random.default_rng(config.seed))]
    real = read_real(data.dataset, rows, tuple(data.parameter_names))
    evaluator = Conditioning(real, seed=config.seed)

    def run(state, spec: dict[str, Any], step: int) -> dict[str, float]:
        model = model_from_state(config, spec, jax.device_get(state), step=step)
        if "generate" not in model.predict:
            return {}
        result = evaluator.run(model)
        out = {f"val_conditioning/r2/{name}": p["generated"]["r2"] for name, p in result["parameters"].items()
               if p["drawn"] and p["generated"]["r2"] is not None}
        out["val_conditioning/failure_rate"] = result["failure_rate"] or 0.0
        return out

    return run
