"""Settings every experiment shares: each config in this package starts from :func:`base_config`."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "data/helsinki"  # a directory written by `urbangen data build`
    c.parameters = ()  # urban-form parameters to condition on / predict; () = all the dataset has
    c.buildings_known_only = False  # train and validate only on tiles whose source mapped its buildings
    c.seed = 0
    c.batch_size = 4  # global, over all devices and hosts
    c.num_steps = 10_000
    c.precision = "float32"  # or "bfloat16": bf16 compute, float32 parameters and optimizer state
    c.distributed = False  # force jax.distributed.initialize(); it also runs when JAX_COORDINATOR_ADDRESS is set
    # Grain reads, decodes and augments batches in these threads while the step runs (0: in the step's thread),
    # keeping up to loader_prefetch batches ready; benchmarks/bench_train.py --loader measures that it keeps up.
    c.loader_threads = 2
    c.loader_prefetch = 4

    # Splits by whole regions of every city (urbangen.splits): val chooses checkpoints and stops early,
    # test is only for reported numbers. Tiles of different splits closer than the buffer are dropped.
    c.val_fraction = 0.2  # of each city's regions, held out whole for validation
    c.test_fraction = 0.2  # of each city's regions, held out whole for testing
    c.split_buffer_m = 0.0  # 0 = one tile (tile_px * meters_per_pixel)
    # A model file (or a shipped model's file name) trained on the same ground at another scale: this run's
    # split takes that model's regions, tiles touching regions of two splits dropped (urbangen.splits.region_split).
    c.split_like = ""
    c.eval_every = 500  # evaluate and checkpoint
    c.eval_batches = 8
    c.eval_conditioning_tiles = 0  # > 0: at each evaluation, the conditioning evaluator on this many validation tiles
    c.early_stopping_patience = 10  # evaluations without improvement; 0 = off
    c.keep_checkpoints = 3  # latest N, plus the best by the task's validation metric
    c.log_every = 50
    c.sample_every = 1000  # sample grid (condition | generated | real); 0 = off

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 2e-4
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.decay_fraction = 0.0  # linear decay to 0 over this last fraction of the steps
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 0.0

    c.wandb = ml_collections.ConfigDict()
    c.wandb.mode = ""  # online | offline | disabled; "" = $WANDB_MODE, else disabled
    c.wandb.project = "urbangen"
    c.wandb.entity = ""
    c.wandb.name = ""
    c.wandb.tags = ()
    return c


def use_test_schedule(c: ml_collections.ConfigDict) -> None:
    """The short schedule of every ``:test`` variant: a few steps on tiny batches, everything exercised."""
    c.batch_size = 8
    c.num_steps = 40
    c.eval_every = 20
    c.eval_batches = 2
    c.log_every = 5
    c.sample_every = 20


def use_quickstart_schedule(c: ml_collections.ConfigDict, num_steps: int, batch_size: int) -> None:
    """The ``:quickstart`` variants: the tiny ``:test`` models, trained a minute or two on a CPU."""
    c.batch_size = batch_size
    c.num_steps = num_steps
    c.eval_every = num_steps // 3
    c.eval_batches = 4
    c.log_every = 10
    c.sample_every = num_steps // 3
