"""Training the attention encoder without city labels: masked-patch reconstruction and/or parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipeline.errors import InvalidValueError
from urbangen.conditioning import layout_to_signed
from urbangen.models.encoder import LayoutEncoder, encoder_from_config, patchify
from urbangen.training.loop import Task
from urbangen.training.samples import panel_grid

OBJECTIVES = ("mae", "params", "mae+params")


def unpatchify(patches: np.ndarray, tile_px: int, patch: int, channels: int) -> np.ndarray:
    b = patches.shape[0]
    g = tile_px // patch
    x = patches.reshape(b, g, g, patch, patch, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, tile_px, tile_px, channels)


class EncoderTask(Task):
    """ViT encoder (see :class:`urbangen.training.loop.Task`). Loss = MAE BCE on hidden patches + param MSE."""

    name = "encoder"
    best_metric = "val/loss"
    headline = ("loss", "mae", "params_mse")

    def __init__(self, config: ml_collections.ConfigDict, spec: dict[str, Any]) -> None:
        super().__init__(config, spec)
        cfg = config.encoder
        if cfg.objective not in OBJECTIVES:
            raise InvalidValueError(f"encoder.objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
        self.model = encoder_from_config(cfg, self.tile_px, len(self.channels), self.n_params, self.dtype)

    def init_state(self, rng: jax.Array) -> dict[str, Any]:
        init_key, mask_key, train_key = jax.random.split(rng, 3)
        tiles = jnp.zeros((1, self.tile_px, self.tile_px, len(self.channels)))
        params = self.model.init(init_key, tiles, mask_key)["params"]
        return {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(train_key), "params": params,
                "opt": self.tx.init(params)}

    def losses(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
        cfg = self.config.encoder
        signed = layout_to_signed(batch["tile"])
        out: dict[str, jax.Array] = {}
        if "mae" in cfg.objective:
            logits, mask = self.model.apply({"params": params}, signed, rng, cfg.mask_ratio,
                                            method=LayoutEncoder.reconstruct)
            target = patchify(batch["tile"].astype(jnp.float32), cfg.patch)
            per_patch = optax.sigmoid_binary_cross_entropy(logits, target).mean(axis=-1)
            out["mae"] = (per_patch * mask).sum() / mask.sum()
        if "params" in cfg.objective:
            pred = self.model.apply({"params": params}, signed, method=LayoutEncoder.predict_parameters)
            known = batch["known"].astype(jnp.float32)  # unknown parameters (missing layers) carry no loss
            out["params_mse"] = (((pred - batch["params"]) ** 2) * known).sum() / jnp.maximum(known.sum(), 1.0)
        out["loss"] = out.get("mae", 0.0) + cfg.params_weight * out.get("params_mse", 0.0)
        return out

    def train_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict]:
        rng = self.step_rng(state)

        def loss_fn(params):
            parts = self.losses(params, batch, rng)
            return parts["loss"], parts

        return self.apply_gradients(state, loss_fn)

    def eval_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return self.losses(state["params"], batch, jax.random.key(0))

    def embed(self, state: dict[str, Any], tiles: jnp.ndarray) -> jnp.ndarray:
        """Pooled embeddings (B, dim) of uint8 tiles."""
        return self.model.apply({"params": state["params"]}, layout_to_signed(tiles), method=LayoutEncoder.embed)

    def reconstruct(self, state: dict[str, Any], tiles: jnp.ndarray, rng: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """MAE pixel logits (B, N, p*p*C) of uint8 tiles and the mask of hidden patches."""
        return self.model.apply({"params": state["params"]}, layout_to_signed(tiles), rng,
                                self.config.encoder.mask_ratio, method=LayoutEncoder.reconstruct)

    def sample_grid(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> np.ndarray:
        cfg = self.config.encoder
        n = min(4, batch["tile"].shape[0])
        tiles = batch["tile"][:n]
        logits, mask = self.jit("reconstruct")(state, tiles, jax.random.key(1))
        c = len(self.channels)
        probs = unpatchify(np.asarray(jax.nn.sigmoid(logits)), self.tile_px, cfg.patch, c)
        hidden = unpatchify(np.repeat(np.asarray(mask)[..., None], cfg.patch * cfg.patch * c, axis=-1),
                            self.tile_px, cfg.patch, c)
        real = np.asarray(tiles, np.float32)
        return panel_grid([(real * (1 - hidden), self.channels), (probs, self.channels), (real, self.channels)])
