"""The training loop shared by every model.

A task (:mod:`urbangen.training.pix2pix`, ``vae``, ``encoder``) says how to
initialise its state, what one train step and one eval step compute, and how
to draw samples; this loop does the rest, top to bottom: open and split the
data, build the mesh, restore the latest checkpoint, then step, log, check
for NaN, evaluate, checkpoint and stop early.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from urbangen.checkpoints import Checkpointer
from urbangen.conditioning import ParameterScaler
from urbangen.settings import progress_disabled
from urbangen.splits import ensure_same_split
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

#: Metrics of the weights being trained beyond the task's own (``eval_step``), at each evaluation:
#: called with the train state, the run spec and the step; returns metrics to log.
ValScorer = Callable[[Any, dict[str, Any], int], dict[str, float]]
#: Builds a :data:`ValScorer` for a run from its config and data, or None when the config leaves it off.
#: Evaluators come in this way (as in big_vision), so the trainers import none of them:
#: :func:`urbangen.evaluators.in_training.conditioning` is the one ``experiments/train.py`` passes.
ValScorerFactory = Callable[[ml_collections.ConfigDict, TrainingData], ValScorer | None]


#: XLA:CPU compiler options for programs that run once (``Task.initial_state``): its backend optimizations off.
#: Measured on CPU only; other backends compile with their defaults.
_UNOPTIMIZED_ON_CPU = {"xla_backend_optimization_level": 0}


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

    def initial_state(self, rng: jax.Array) -> dict[str, Any]:
        """``init_state`` as one program, compiled on CPU without XLA's backend optimizations.

        Run op by op, Flax's init compiled each of some 250 small ops on its own (17 s of a 2-step pix2pix
        run's 34 s on a 2-core CPU), none long enough for the persistent compilation cache to keep. As one
        program it compiles in 9 s with XLA's optimizations, in 1-2 s without; initializing runs once, so
        the slower code costs nothing (0.07 s). The parameters equal the op-by-op ones to float32 rounding
        (at most 2e-8 apart).
        """
        options = _UNOPTIMIZED_ON_CPU if jax.default_backend() == "cpu" else None
        return self.jit("init_state", compiler_options=options)(rng)

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


def fit(task_cls: type[Task], config: ml_collections.ConfigDict, workdir: str | Path, *,
        val_scorers: Sequence[ValScorerFactory] = ()) -> dict[str, Any]:
    """Train ``task_cls`` as ``config`` says, in ``workdir``, resuming from its latest checkpoint.

    ``val_scorers`` add metrics at each evaluation, on the main process
    (:data:`ValScorerFactory`).

    Returns
    -------
    dict
        ``step`` reached, ``best_step``, the last training and validation
        metrics, and ``stopped_early``.
    """
    if config.get("eval_conditioning_tiles", 0) and not val_scorers:
        raise InvalidValueError(
            f"eval_conditioning_tiles = {config.eval_conditioning_tiles} asks for the conditioning evaluator "
            "during training: pass val_scorers=(urbangen.evaluators.in_training.conditioning,) to train(), "
            "as experiments/train.py does")
    run = _Run.open(task_cls, config, workdir)
    task, mesh, checkpointer = run.task, run.mesh, run.checkpointer
    step_fn = jax.jit(task.train_step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                      out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)
    # Batches: batch k of the training stream is the same whether or not the run was interrupted.
    train_batches = run.data.batches("train", local_batch_size(config.batch_size, mesh), seed=config.seed,
                                     training=True, **run.shard)
    evaluation = _Evaluation(run, val_scorers)
    tic = time.perf_counter()
    stream = iter(train_batches[run.start:config.num_steps].to_iter_dataset(
        grain.ReadOptions(num_threads=config.loader_threads, prefetch_buffer_size=config.loader_prefetch)))
    state, done, run.state = run.state, run.start, None  # the step donates the state: keep no other reference
    with _progress(not run.is_main) as progress, _StopOnInterrupt() as interrupt:
        log = _TrainLog(run, progress, tic)
        try:
            for step in range(run.start, config.num_steps):
                if interrupt.requested:
                    break
                state, metrics = step_fn(state, to_global(next(stream), mesh))
                done = step + 1
                log.add(done, metrics, flush=evaluation.due(done) or done == config.num_steps)
                if evaluation.due(done):
                    evaluation(state, done)
                if config.sample_every and done % config.sample_every == 0 and evaluation.batches:
                    run.logger.log_image(done, "samples", task.sample_grid(state, evaluation.batches[0]),
                                         caption="condition | generated | real")
                    log.tic = time.perf_counter()  # sampling is not training throughput
                log.show(done)
                if evaluation.stopped_early:
                    break
            if not evaluation.batches or checkpointer.latest_step() != done:
                checkpointer.save(done, state, {**run.meta, "step": done})
            checkpointer.wait()
            best_step = checkpointer.best_step()
            if interrupt.requested:  # the state reached is saved above; the run still ends as interrupted
                raise KeyboardInterrupt(f"interrupted at step {done}")
        except KeyboardInterrupt:
            # Keep what was learned: save where we are unless the state may already be bad, or was handed to a
            # step a second Ctrl-C broke into (the step donates it: its buffers are gone).
            whole = not any(leaf.is_deleted() for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.Array))
            if whole and log.pending_finite() and checkpointer.latest_step() != done:
                checkpointer.save(done, state, {**run.meta, "step": done})
            raise
        finally:
            checkpointer.close()
            run.logger.finish()
    return {"step": done, "best_step": best_step, "train": log.metrics, "val": evaluation.metrics,
            "stopped_early": evaluation.stopped_early}


class _StopOnInterrupt:
    """Ctrl-C (SIGINT) during training stops it after the step under way, which is then saved.

    The step donates the state it is given: a KeyboardInterrupt raised inside
    it leaves no whole state to save (a run stopped by ``timeout -s INT`` on a
    busy GPU lost its last 1000 steps that way). So the first Ctrl-C only asks
    the loop to stop at the next step boundary; a second one interrupts at once.
    Outside the main thread (where no handler can be set), or where SIGINT is
    ignored, it acts as before.
    """

    requested: bool = False

    def __enter__(self) -> _StopOnInterrupt:
        # Not where Python cannot set a handler (another thread), nor where Ctrl-C is ignored (a background job)
        # or handled outside Python (the previous handler is then None and could not be put back).
        previous = signal.getsignal(signal.SIGINT)
        self._installed = (threading.current_thread() is threading.main_thread()
                           and previous not in (signal.SIG_IGN, None))
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt("interrupted twice")
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class _Run:
    """What a run trains: its config, data, task, mesh, (restored) state and where it writes."""

    config: ml_collections.ConfigDict
    is_main: bool
    mesh: Any
    checkpointer: Checkpointer
    data: TrainingData
    task: Task
    state: Any
    start: int
    meta: dict[str, Any]
    logger: RunLogger

    @property
    def shard(self) -> dict[str, int]:
        """This host's shard of every batch stream."""
        return dict(shard_index=jax.process_index(), shard_count=jax.process_count())

    @classmethod
    def open(cls, task_cls: type[Task], config: ml_collections.ConfigDict, workdir: str | Path) -> _Run:
        maybe_initialize_distributed(config.get("distributed", False))
        workdir = Path(workdir).absolute()
        is_main = jax.process_index() == 0
        mesh = make_mesh()

        # Data: a resumed run reuses the scaler its checkpoint was trained with.
        checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints,
                                    best_metric=task_cls.best_metric)
        resumed_meta = checkpointer.restore_meta() if checkpointer.latest_step() is not None else None
        scaler = ParameterScaler.from_dict(resumed_meta["spec"]["scaler"]) if resumed_meta else None
        data = TrainingData.open(config.dataset, parameters=tuple(config.parameters),
                                 val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                                 buffer_m=config.split_buffer_m, seed=config.seed, scaler=scaler,
                                 buildings_known_only=config.buildings_known_only,
                                 split_like=config.get("split_like", ""))
        if resumed_meta is not None:
            # A resumed run must train, validate and leave out exactly the tiles it did before.
            if "split" in resumed_meta:
                ensure_same_split(resumed_meta["split"], data.split)
            elif is_main:
                Console(stderr=True).print("[yellow]the checkpoint records no train/val/test split (written "
                                           "before splits were recorded): resuming with the split the config "
                                           "gives now")
        task = task_cls(config, data.spec)

        # State: fresh, or restored with its step, RNG key and optimizer state.
        state = replicate(task.initial_state(jax.random.key(config.seed)), mesh)
        start = 0
        if resumed_meta is not None:
            try:
                state, _ = checkpointer.restore(state)
            except Exception as err:  # noqa: BLE001 - a shape mismatch reads badly from orbax; say what it means
                raise InvalidValueError(f"the checkpoint in {checkpointer.directory} does not fit this config's "
                                        f"model (was the model config changed?): {err}") from err
            start = int(resumed_meta["step"])
        # best_metric lets inference pick the best checkpoint without the trainer (urbangen.inference).
        meta = {"task": task.name, "best_metric": task.best_metric, "config": config.to_dict(), "spec": data.spec,
                "dataset": str(config.dataset),
                "train_tiles": int(len(data.train_indices)), "val_tiles": int(len(data.val_indices)),
                "test_tiles": int(len(data.test_indices)), "split": data.split_record}
        logger = RunLogger(workdir, config.to_dict(), config.wandb.to_dict(), is_main=is_main)
        logger.truncate_after(start)
        return cls(config, is_main, mesh, checkpointer, data, task, state, start, meta, logger)


class _TrainLog:
    """Training metrics: fetched from the device every ``log_every`` steps (and when flushed), checked finite,
    logged with the learning rate and throughput, and shown on the progress bar."""

    def __init__(self, run: _Run, progress: Progress, tic: float) -> None:
        self.run, self.progress = run, progress
        self.bar = progress.add_task(f"train {run.task.name}", total=run.config.num_steps, completed=run.start,
                                     status="")
        self.pending: list[dict[str, jax.Array]] = []
        self.metrics: dict[str, float] = {}
        #: Throughput since ``tic``: training images and the clock.
        self.tic, self.images = tic, 0

    def add(self, done: int, metrics: dict[str, jax.Array], flush: bool) -> None:
        config, task = self.run.config, self.run.task
        self.pending.append(metrics)
        self.images += config.batch_size
        if not (done % config.log_every == 0 or flush):
            return
        rows = self._rows()
        _check_finite(rows, done - len(rows) + 1, self.run.checkpointer)
        self.pending = []
        elapsed = time.perf_counter() - self.tic
        self.metrics = {f"train/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}
        self.run.logger.log(done, {**self.metrics, "train/learning_rate": task.learning_rate(done),
                                   "perf/img_per_s": self.images / elapsed, "perf/step_s": elapsed / len(rows)})
        self.tic, self.images = time.perf_counter(), 0
        self.progress.update(self.bar, status=" ".join(f"{k}={self.metrics['train/' + k]:.3g}" for k in task.headline
                                                       if "train/" + k in self.metrics))

    def show(self, done: int) -> None:
        self.progress.update(self.bar, completed=done)
        total = self.run.config.num_steps
        if not self.progress.live.console.is_terminal and not self.progress.disable and done % max(1, total // 10) == 0:
            # A log file gets no live bar: a line every tenth of the run instead.
            self.progress.console.print(f"train {self.run.task.name}: step {done}/{total} "
                                        + self.progress.tasks[0].fields.get("status", ""))

    def pending_finite(self) -> bool:
        return all(np.isfinite(list(r.values())).all() for r in self._rows())

    def _rows(self) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in r.items()} for r in jax.device_get(self.pending)]


class _Evaluation:
    """At evaluation steps: validation metrics, conditioning scores, a checkpoint, and early stopping."""

    def __init__(self, run: _Run, val_scorers: Sequence[ValScorerFactory]) -> None:
        config, mesh, data = run.config, run.mesh, run.data
        self.run = run
        n_dev = mesh.devices.size
        val_batch = min(config.batch_size, (len(data.val_indices) // n_dev) * n_dev)
        val = data.batches("val", val_batch // jax.process_count(), training=False, **run.shard) if val_batch else None
        self.batches = [] if val is None else [to_global(val[i], mesh)
                                               for i in range(min(len(val), config.eval_batches))]
        if not self.batches:
            Console(stderr=True).print("[yellow]no validation tiles: no evaluation, early stopping or best checkpoint")
        self.eval_fn = jax.jit(run.task.eval_step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                               out_shardings=replicated(mesh))
        built = [factory(config, data) for factory in val_scorers] if run.is_main else []
        self.scorers = [scorer for scorer in built if scorer is not None]
        self.metrics: dict[str, float] = {}
        self.best, self.without_gain, self.stopped_early = np.inf, 0, False

    def due(self, done: int) -> bool:
        config = self.run.config
        return bool(self.batches) and (done % config.eval_every == 0 or done == config.num_steps)

    def __call__(self, state: Any, done: int) -> None:
        run, config = self.run, self.run.config
        rows = jax.device_get([self.eval_fn(state, b) for b in self.batches])
        self.metrics = {f"val/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}
        run.logger.log(done, self.metrics)
        for scorer in self.scorers:
            if scores := scorer(state, run.data.spec, done):
                run.logger.log(done, scores)
        run.checkpointer.save(done, state, {**run.meta, "step": done}, metrics=self.metrics)
        current = self.metrics[run.task.best_metric]
        self.best, self.without_gain = (current, 0) if current < self.best else (self.best, self.without_gain + 1)
        if config.early_stopping_patience and self.without_gain >= config.early_stopping_patience:
            self.stopped_early = True
