"""Training the conditional VAE: Bernoulli reconstruction + beta * KL, with KL warm-up.

It models ``vae.output_channels`` (default all), as 0/1 layers or, with
``vae.target = "proximity"``, as proximity fields (soft Bernoulli targets).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipeline.errors import InvalidValueError
from urbangen.conditioning import channel_indices, layout_to_signed
from urbangen.models.vae import ConditionalVAE, kl_divergence, vae_from_config
from urbangen.proximity import proximity_field
from urbangen.training.loop import Task
from urbangen.training.samples import panel_grid


class VAETask(Task):
    """Conditional (or unconditional) VAE on a tile dataset (see :class:`urbangen.training.loop.Task`)."""

    name = "vae"
    best_metric = "val/nelbo"
    headline = ("loss", "recon", "kl")

    def __init__(self, config: ml_collections.ConfigDict, spec: dict[str, Any]) -> None:
        super().__init__(config, spec)
        cfg = config.vae
        levels = len(cfg.features)
        if self.tile_px % 2**levels or self.tile_px < 2**levels:
            raise InvalidValueError(f"tile size {self.tile_px} cannot be halved {levels} times (vae.features)")
        self.output_channels = list(cfg.get("output_channels", ())) or self.channels
        self.out_idx = channel_indices(self.channels, self.output_channels)
        self.model = vae_from_config(cfg, len(self.out_idx), self.dtype)

    def target(self, tiles: jax.Array) -> jnp.ndarray:
        """What the decoder's Bernoulli likelihood is of: the output layers, or their proximity fields."""
        layers = tiles[..., self.out_idx]
        if self.config.vae.get("target", "mask") == "proximity":
            return proximity_field(layers)
        return layers.astype(jnp.float32)

    def init_state(self, rng: jax.Array) -> dict[str, Any]:
        init_key, sample_key, train_key = jax.random.split(rng, 3)
        tiles = jnp.zeros((1, self.tile_px, self.tile_px, len(self.out_idx)))
        params = self.model.init(init_key, tiles, jnp.zeros((1, self.n_params)), sample_key)["params"]
        return {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(train_key), "params": params,
                "opt": self.tx.init(params)}

    def beta(self, step: jax.Array) -> jax.Array:
        """KL weight: linear warm-up from 0 to ``vae.beta`` over ``vae.kl_warmup_steps``."""
        cfg = self.config.vae
        if not cfg.kl_warmup_steps:
            return jnp.asarray(cfg.beta, jnp.float32)
        return cfg.beta * jnp.minimum(1.0, step.astype(jnp.float32) / cfg.kl_warmup_steps)

    def losses(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
        """Per-tile reconstruction (nats, summed over pixels and channels) and KL, averaged over the batch."""
        tiles = batch["tile"][..., self.out_idx]
        logits, mu, log_var = self.model.apply({"params": params}, layout_to_signed(tiles), batch["params"], rng)
        recon = optax.sigmoid_binary_cross_entropy(logits, self.target(batch["tile"])).sum(axis=(1, 2, 3))
        return {"recon": recon.mean(), "kl": kl_divergence(mu, log_var).mean()}

    def train_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict]:
        rng, beta = self.step_rng(state), self.beta(state["step"])

        def loss_fn(params):
            parts = self.losses(params, batch, rng)
            loss = parts["recon"] + beta * parts["kl"]
            return loss, {"loss": loss, "beta": beta, **parts}

        return self.apply_gradients(state, loss_fn)

    def eval_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        parts = self.losses(state["params"], batch, jax.random.key(0))
        return {**parts, "nelbo": parts["recon"] + parts["kl"]}  # the full ELBO, beta = 1, comparable across runs

    def encode(self, state: dict[str, Any], tiles: jnp.ndarray, params: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Posterior mean and log-variance of uint8 tiles (all the dataset's channels)."""
        return self.model.apply({"params": state["params"]}, layout_to_signed(tiles[..., self.out_idx]), params,
                                method=ConditionalVAE.encode)

    def decode(self, state: dict[str, Any], z: jnp.ndarray, params: jnp.ndarray) -> jnp.ndarray:
        """Pixel probabilities in [0, 1] (B, H, W, C) for latents and standardized parameters."""
        logits = self.model.apply({"params": state["params"]}, z, params, self.tile_px, method=ConditionalVAE.decode)
        return jax.nn.sigmoid(logits)

    def sample(self, state: dict[str, Any], params: jnp.ndarray, n: int, rng: jax.Array) -> jnp.ndarray:
        """``n`` layouts (probabilities) per row of standardized ``params`` (P,) or (B, P): z from the prior."""
        params = jnp.atleast_2d(params)
        params = jnp.repeat(params, n, axis=0)
        z = jax.random.normal(rng, (params.shape[0], self.config.vae.latent_dim))
        return self.decode(state, z, params)

    def sample_grid(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> np.ndarray:
        n = min(4, batch["tile"].shape[0])
        tiles, params = batch["tile"][:n], batch["params"][:n]
        mu, _ = self.jit("encode")(state, tiles, params)
        recon = np.asarray(self.jit("decode")(state, mu, params))
        prior = np.asarray(self.jit("sample", static_argnums=2)(state, params, 1, jax.random.key(1)))
        real = np.asarray(self.target(tiles), np.float32)
        return panel_grid([(prior, self.output_channels), (recon, self.output_channels), (real, self.output_channels)])
