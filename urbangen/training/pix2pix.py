"""Training pix2pix: one discriminator step, then one generator step.

The generator maps condition maps (standardized parameters broadcast over
the tile, plus any layout channels given as input) to the output layout
channels; the discriminator judges (condition, layout) pairs patch by patch.

With ``pix2pix.latent_channels`` > 0 the generator also reads a latent map,
its real noise source, trained as in BicycleGAN (Zhu et al. 2017), whose
reference settings this follows (LSGAN, lambda_L1 10, lambda_KL 0.01 per
latent vector, lambda_z 0.5):

- cVAE-GAN: an encoder reads the real layout; the generator reconstructs it
  from the condition and a latent drawn from that posterior (L1 + GAN), and
  a KL term keeps the posterior near the N(0, I) prior;
- cLR-GAN: a latent drawn from the prior must give a layout the
  discriminator takes for real, and the encoder must recover that latent
  from it (a latent regression that updates the generator only), so that
  different latents give different layouts.

Without the latent the generator has only a constant parameter map (and
dropout) to go on and regresses to the mean layout: blank where streets
and buildings are rare.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipeline.errors import InvalidValueError
from urbangen.conditioning import channel_indices, layout_to_signed, parameter_maps
from urbangen.models.pix2pix import (
    PatchDiscriminator,
    generator_from_config,
    latent_encoder_from_config,
    upsample_latent,
)
from urbangen.proximity import proximity_field
from urbangen.training.loop import Task
from urbangen.training.optim import adam
from urbangen.training.samples import panel_grid

GAN_LOSSES = ("vanilla", "lsgan")
TARGETS = ("mask", "proximity")


def gan_loss(logits: jnp.ndarray, is_real: bool, kind: str) -> jnp.ndarray:
    """Vanilla (BCE on logits) or least-squares GAN loss against an all-real or all-fake target."""
    target = jnp.full_like(logits, 1.0 if is_real else 0.0)
    if kind == "vanilla":
        return optax.sigmoid_binary_cross_entropy(logits, target).mean()
    if kind == "lsgan":
        return jnp.mean((logits - target) ** 2)
    raise InvalidValueError(f"gan_loss must be one of {GAN_LOSSES}, got {kind!r}")


class Pix2PixTask(Task):
    """pix2pix on a tile dataset (see :class:`urbangen.training.loop.Task`)."""

    name = "pix2pix"
    best_metric = "val/l1"
    headline = ("g_loss", "d_loss", "l1")

    def __init__(self, config: ml_collections.ConfigDict, spec: dict[str, Any]) -> None:
        super().__init__(config, spec)
        cfg = config.pix2pix
        self.input_channels = list(cfg.input_channels)
        self.output_channels = list(cfg.output_channels) or [c for c in self.channels if c not in self.input_channels]
        overlap = set(self.input_channels) & set(self.output_channels)
        if overlap:
            raise InvalidValueError(f"channels {sorted(overlap)} cannot be both generator input and output")
        self.in_idx = channel_indices(self.channels, self.input_channels)
        self.out_idx = channel_indices(self.channels, self.output_channels)
        if cfg.gan_loss not in GAN_LOSSES:
            raise InvalidValueError(f"pix2pix.gan_loss must be one of {GAN_LOSSES}, got {cfg.gan_loss!r}")
        self.generator = generator_from_config(cfg, self.tile_px, len(self.out_idx), self.dtype)
        self.discriminator = PatchDiscriminator(ndf=cfg.ndf, n_layers=cfg.d_layers, norm=cfg.get("d_norm", "batch"),
                                                dtype=self.dtype)
        self.encoder = latent_encoder_from_config(cfg, self.dtype)
        # The discriminator's own optimizer: a faster one (two time-scale update rule, Heusel et al. 2017)
        # keeps it from being pinned at "cannot tell" by a generator of many times its size.
        d_optim = ml_collections.ConfigDict(config.optim.to_dict())
        d_optim.learning_rate = config.optim.learning_rate * cfg.get("d_lr_scale", 1.0)
        self.d_tx = adam(d_optim, config.num_steps)
        if cfg.target not in TARGETS:
            raise InvalidValueError(f"pix2pix.target must be one of {TARGETS}, got {cfg.target!r}")
        if self.encoder is not None and self.tile_px % cfg.latent_stride:
            raise InvalidValueError(
                f"pix2pix.latent_stride {cfg.latent_stride} must divide the tile size {self.tile_px}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(rows, cols, channels) of one tile's latent map; channels 0 without a latent."""
        cfg = self.config.pix2pix
        if self.encoder is None:
            return (0, 0, 0)
        side = self.tile_px // cfg.latent_stride
        return (side, side, cfg.latent_channels)

    def generator_input(self, cond: jnp.ndarray, z: jnp.ndarray | None) -> jnp.ndarray:
        """The condition maps, and the latent map repeated to pixels when the model has one."""
        if self.encoder is None or z is None:  # z is None exactly when there is no encoder
            return cond
        cfg = self.config.pix2pix
        return jnp.concatenate([cond, upsample_latent(z, cfg.latent_stride, cfg.latent_upsample)], axis=-1)

    def prior_latent(self, rng: jax.Array, batch: int) -> jnp.ndarray | None:
        return None if self.encoder is None else jax.random.normal(rng, (batch, *self.latent_shape))

    @property
    def condition_channels(self) -> int:
        return self.n_params + len(self.in_idx)

    def condition(self, batch: dict[str, jax.Array]) -> jnp.ndarray:
        """Generator input: parameter maps, then the given layout channels in [-1, 1]."""
        tile = batch["tile"]
        maps = parameter_maps(batch["params"], tile.shape[1], tile.shape[2])
        given = layout_to_signed(tile[..., self.in_idx]) if self.in_idx else maps[..., :0]
        return jnp.concatenate([maps, given], axis=-1)

    def target(self, batch: dict[str, jax.Array]) -> jnp.ndarray:
        """The output channels in [-1, 1]: as 0/1 layers, or as proximity fields (``pix2pix.target``)."""
        layers = batch["tile"][..., self.out_idx]
        if self.config.pix2pix.target == "proximity":
            return 2.0 * proximity_field(layers) - 1.0
        return layout_to_signed(layers)

    def init_state(self, rng: jax.Array) -> dict[str, Any]:
        g_key, d_key, drop_key, train_key = jax.random.split(rng, 4)
        cond = jnp.zeros((1, self.tile_px, self.tile_px, self.condition_channels))
        layout = jnp.zeros((1, self.tile_px, self.tile_px, len(self.out_idx)))
        g_vars = self.generator.init({"params": g_key, "dropout": drop_key},
                                     self.generator_input(cond, self.prior_latent(drop_key, 1)), train=False)
        d_vars = self.discriminator.init(d_key, cond, layout, train=False)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(train_key),
            "g": {"params": g_vars["params"], "batch_stats": g_vars["batch_stats"],
                  "opt": self.tx.init(g_vars["params"])},
            "d": {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {}),
                  "opt": self.d_tx.init(d_vars["params"])},
        }
        if self.encoder is not None:
            e_params = self.encoder.init(jax.random.fold_in(g_key, 1), layout)["params"]
            state["e"] = {"params": e_params, "opt": self.tx.init(e_params)}
        return state

    def train_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict]:
        if self.encoder is not None:
            return self._latent_train_step(state, batch)
        cfg = self.config.pix2pix
        rng = self.step_rng(state)
        cond, real = self.condition(batch), self.target(batch)
        g, d = state["g"], state["d"]

        # The generator runs once; its backward pass is kept for the G step.
        def generate(g_params):
            fake, updates = self.generator.apply({"params": g_params, "batch_stats": g["batch_stats"]}, cond,
                                                 train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
            return fake, updates["batch_stats"]

        fake, generator_vjp, g_stats = jax.vjp(generate, g["params"], has_aux=True)

        d_loss, d_params, d_stats, d_opt, d_real, d_fake = self._d_step(d, cond, fake, cond, real)

        # G step: fool the updated D, and stay close to the real layout (lambda_L1).
        def g_loss_fn(fake):
            logits, upd = self.discriminator.apply({"params": d_params, "batch_stats": d_stats}, cond, fake,
                                                   train=True, mutable=["batch_stats"])
            adversarial = gan_loss(logits, True, cfg.gan_loss)
            l1 = jnp.mean(jnp.abs(fake - real))
            return adversarial + cfg.lambda_l1 * l1, (adversarial, l1, upd.get("batch_stats", {}))

        (g_loss, (g_adv, l1, d_stats)), d_fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        (g_grads,) = generator_vjp(d_fake_grad)
        g_updates, g_opt = self.tx.update(g_grads, g["opt"], g["params"])
        g_params = optax.apply_updates(g["params"], g_updates)

        new_state = {"step": state["step"] + 1, "rng": state["rng"],
                     "g": {"params": g_params, "batch_stats": g_stats, "opt": g_opt},
                     "d": {"params": d_params, "batch_stats": d_stats, "opt": d_opt}}
        metrics = {"g_loss": g_loss, "g_gan": g_adv, "l1": l1, "d_loss": d_loss, "d_real": d_real, "d_fake": d_fake}
        return new_state, metrics

    def _d_step(self, d: dict[str, Any], fake_cond: jnp.ndarray, fake: jnp.ndarray, real_cond: jnp.ndarray,
                real: jnp.ndarray) -> tuple:
        """One discriminator update: real pairs towards 1, generated pairs towards 0, the loss halved as in the
        reference; batch statistics run through the fake batch, then the real one.

        Returns the loss, the new parameters, batch statistics and optimizer state, and the mean D(real) and D(fake).
        """
        kind = self.config.pix2pix.gan_loss

        def d_loss_fn(d_params):
            variables = {"params": d_params, "batch_stats": d["batch_stats"]}
            fake_logits, upd = self.discriminator.apply(variables, fake_cond, jax.lax.stop_gradient(fake),
                                                        train=True, mutable=["batch_stats"])
            variables = {"params": d_params, "batch_stats": upd.get("batch_stats", {})}
            real_logits, upd = self.discriminator.apply(variables, real_cond, real, train=True,
                                                        mutable=["batch_stats"])
            loss = 0.5 * (gan_loss(fake_logits, False, kind) + gan_loss(real_logits, True, kind))
            return loss, (upd.get("batch_stats", {}), jax.nn.sigmoid(real_logits).mean(),
                          jax.nn.sigmoid(fake_logits).mean())

        (d_loss, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d["params"])
        d_updates, d_opt = self.d_tx.update(d_grads, d["opt"], d["params"])
        return d_loss, optax.apply_updates(d["params"], d_updates), d_stats, d_opt, d_real, d_fake

    def generate(self, state: dict[str, Any], cond: jnp.ndarray, rng: jax.Array, *, noise: bool = True) -> jnp.ndarray:
        """Layouts in [-1, 1] for condition maps; batch norm on running statistics.

        ``noise``: a latent drawn from the prior (the prior's mean, 0,
        without it), or dropout kept on for a model with no latent.
        """
        g = state["g"]
        z = self.prior_latent(rng, cond.shape[0])
        if z is not None and not noise:
            z = jnp.zeros_like(z)
        return self.generator.apply({"params": g["params"], "batch_stats": g["batch_stats"]},
                                    self.generator_input(cond, z), train=False,
                                    dropout=noise and self.encoder is None, rngs={"dropout": rng})

    def eval_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """L1 and pixel accuracy of the noise-free layout (with a latent: of the real layout's posterior mean)."""
        cond, real = self.condition(batch), self.target(batch)
        if self.encoder is None:
            fake = self.generate(state, cond, jax.random.key(0), noise=False)
        else:
            g = state["g"]
            z, _ = self.encoder.apply({"params": state["e"]["params"]}, real)
            fake = self.generator.apply({"params": g["params"], "batch_stats": g["batch_stats"]},
                                        self.generator_input(cond, z), train=False, dropout=False)
        agree = (fake > 0) == (real > 0)
        return {"l1": jnp.mean(jnp.abs(fake - real)), "pixel_accuracy": agree.mean()}

    def sample_grid(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> np.ndarray:
        n = min(4, batch["tile"].shape[0])
        sub = {k: v[:n] for k, v in batch.items()}
        fake = np.asarray(self.jit("generate")(state, self.condition(sub), jax.random.key(1)))
        tiles = np.asarray(sub["tile"], np.float32)
        given = tiles[..., self.in_idx] if self.in_idx else np.zeros(tiles.shape[:3] + (0,), np.float32)
        return panel_grid([(given, self.input_channels), ((fake + 1) / 2, self.output_channels),
                           (tiles[..., self.out_idx], self.output_channels)])

    def _latent_train_step(self, state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict]:
        """One BicycleGAN step (see the module docstring): D on real and both kinds of fake, then G and E."""
        cfg = self.config.pix2pix
        rng = self.step_rng(state)
        eps_key, prior_key = jax.random.split(rng)
        cond, real = self.condition(batch), self.target(batch)
        b = real.shape[0]
        g, d, e = state["g"], state["d"], state["e"]
        cond2 = jnp.concatenate([cond, cond])
        z_prior = self.prior_latent(prior_key, b)
        encoder = self.encoder
        assert encoder is not None and z_prior is not None  # this step is the latent model's

        # Generator and encoder run once; their backward pass is kept for the G/E step.
        # Both halves (posterior latent, prior latent) go through G as one batch.
        def generate(ge_params):
            g_params, e_params = ge_params
            mean, logvar = encoder.apply({"params": e_params}, real)
            z_post = mean + jnp.exp(0.5 * logvar) * jax.random.normal(eps_key, mean.shape)
            z = jnp.concatenate([z_post, z_prior])
            fake, updates = self.generator.apply({"params": g_params, "batch_stats": g["batch_stats"]},
                                                 self.generator_input(cond2, z), train=True, dropout=False,
                                                 mutable=["batch_stats"])
            # KL(q(z|x) || N(0, I)) summed over a latent cell's channels, averaged over cells and tiles.
            kl = 0.5 * jnp.mean(jnp.sum(mean**2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1))
            return (fake, kl), updates["batch_stats"]

        (fake, kl), ge_vjp, g_stats = jax.vjp(generate, (g["params"], e["params"]), has_aux=True)

        d_loss, d_params, d_stats, d_opt, d_real, d_fake = self._d_step(d, cond2, fake, cond, real)

        def g_loss_fn(fake):
            logits, upd = self.discriminator.apply({"params": d_params, "batch_stats": d_stats}, cond2, fake,
                                                   train=True, mutable=["batch_stats"])
            adversarial = 2.0 * gan_loss(logits, True, cfg.gan_loss)  # a GAN term for each half, as in BicycleGAN
            l1 = jnp.mean(jnp.abs(fake[:b] - real))
            # Latent regression: the encoder (held fixed here) must find the prior latent in its layout.
            z_found, _ = encoder.apply({"params": e["params"]}, fake[b:])
            latent = jnp.mean(jnp.abs(z_found - z_prior))
            loss = adversarial + cfg.lambda_l1 * l1 + cfg.lambda_latent * latent
            return loss, (adversarial, l1, latent, upd.get("batch_stats", {}))

        (g_loss, (g_adv, l1, latent, d_stats)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        ((g_grads, e_grads),) = ge_vjp((fake_grad, jnp.asarray(cfg.lambda_kl, kl.dtype)))
        g_updates, g_opt = self.tx.update(g_grads, g["opt"], g["params"])
        e_updates, e_opt = self.tx.update(e_grads, e["opt"], e["params"])

        new_state = {"step": state["step"] + 1, "rng": state["rng"],
                     "g": {"params": optax.apply_updates(g["params"], g_updates), "batch_stats": g_stats,
                           "opt": g_opt},
                     "d": {"params": d_params, "batch_stats": d_stats, "opt": d_opt},
                     "e": {"params": optax.apply_updates(e["params"], e_updates), "opt": e_opt}}
        metrics = {"g_loss": g_loss + cfg.lambda_kl * kl, "g_gan": g_adv, "l1": l1, "kl": kl, "latent": latent,
                   "d_loss": d_loss, "d_real": d_real, "d_fake": d_fake}
        return new_state, metrics
