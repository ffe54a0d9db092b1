"""Settings every experiment shares; ``experiments/configs/*.py`` start from :func:`base_config`."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "data/helsinki"  # a directory written by `urbangen data build`
    c.parameters = ()  # urban-form parameters to condition on / predict; () = all the dataset has
    c.seed = 0
    c.batch_size = 4  # global, over all devices and hosts
    c.num_steps = 10_000
    c.precision = "float32"  # or "bfloat16": bf16 compute, float32 parameters and optimizer state
    c.distributed = False  # force jax.distributed.initialize(); it also runs when JAX_COORDINATOR_ADDRESS is set

    c.val_fraction = 0.2  # of each city's regions, held out whole
    c.eval_every = 500  # evaluate and checkpoint
    c.eval_batches = 8
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
