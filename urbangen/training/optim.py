"""Optimizers and learning-rate schedules from config."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """Constant, then linear decay to 0 over the last ``decay_fraction`` of the steps (pix2pix's policy).

    ``decay_fraction = 0`` keeps the rate constant; ``warmup_steps`` ramps it up first.
    """
    decay_steps = int(round(optim.get("decay_fraction", 0.0) * num_steps))
    warmup = int(optim.get("warmup_steps", 0))
    constant_steps = max(num_steps - decay_steps - warmup, 0)
    parts = [optax.constant_schedule(optim.learning_rate)]
    boundaries = []
    if warmup:
        parts.insert(0, optax.linear_schedule(0.0, optim.learning_rate, warmup))
        boundaries.append(warmup)
    if decay_steps:
        parts.append(optax.linear_schedule(optim.learning_rate, 0.0, decay_steps))
        boundaries.append(warmup + constant_steps)
    return optax.join_schedules(parts, boundaries) if boundaries else parts[0]


def adam(optim: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
    """Adam (or AdamW with ``weight_decay``) on the schedule above, with optional gradient clipping."""
    schedule = learning_rate_schedule(optim, num_steps)
    if optim.get("weight_decay", 0.0):
        tx = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    else:
        tx = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    if optim.get("grad_clip_norm", 0.0):
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx
