"""Trained runs for inference: a typed run spec, the weights, and named predict functions.

``load_run(workdir)`` reads a run's checkpoint without the training code: it
builds the Flax modules from the run's recorded config (the same
``*_from_config`` builders the trainers use), restores only the weights
inference needs, and returns a :class:`TrainedModel` whose ``predict`` maps a
name to a function, as big_vision's ``predict_fns`` do:

- ``generate(z_maps, key, given=None)``: per-pixel probabilities of the
  output channels, (B, t, t, C_out) in [0, 1], for standardized parameter
  maps (B, t, t, P) and, for a run that draws around given channels (a street
  network), those channels as uint8 0/1 (B, t, t, C_in);
- ``encode(tiles, z_params)``: a VAE's posterior mean and log-variance;
- ``decode(z, z_params)``: a VAE's per-pixel probabilities (B, t, t, C) for latents
  (B, latent_dim) and standardized parameters (B, P);
- ``embed(tiles)``: the attention encoder's pooled embedding.

Generation, evaluation and analysis ask for a function by name; what differs
between model kinds lives here, in :data:`_BUILDERS`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pydantic

from urbangen.conditioning import ParameterScaler, layout_to_signed

#: How a generator's probabilities become a 0/1 layout: ``bernoulli`` samples them with spatially
#: correlated noise (a VAE's blurry probabilities), ``threshold`` takes p > 0.5 (pix2pix's tanh output).
Sampling = Literal["bernoulli", "threshold"]


class RunSpecError(ValueError):
    """A run folder holds no usable checkpoint, or a model lacks a predict function that was asked for."""


class RunSpec(pydantic.BaseModel):
    """What a trained run needs from data and gives back: recorded in every checkpoint's metadata."""

    model_config = pydantic.ConfigDict(frozen=True)

    kind: Literal["pix2pix", "vae", "encoder"]
    workdir: str
    step: int
    dataset: str
    #: The dataset's channels, in the order tiles arrive in.
    channels: tuple[str, ...]
    #: Channels a generator draws around (given), and those it draws.
    input_channels: tuple[str, ...] = ()
    output_channels: tuple[str, ...] = ()
    tile_px: int
    meters_per_pixel: float
    parameter_names: tuple[str, ...]
    scaler_mean: tuple[float, ...]
    scaler_std: tuple[float, ...]
    sampling: Sampling | None = None
    #: A VAE conditioned on the parameters (its latent holds what they don't explain).
    conditional: bool = False
    #: The run's train / validation / test split (see :mod:`urbangen.splits`), if recorded.
    split: dict[str, Any] | None = None
    config: dict[str, Any]

    @property
    def scaler(self) -> ParameterScaler:
        return ParameterScaler(self.parameter_names, self.scaler_mean, self.scaler_std)

    @property
    def tile_m(self) -> float:
        return self.tile_px * self.meters_per_pixel


@dataclass(frozen=True)
class TrainedModel:
    """A run's spec, its weights on the default device, and its predict functions by name."""

    spec: RunSpec
    variables: Any
    predict: dict[str, Callable[..., Any]] = field(repr=False)

    def fn(self, name: str) -> Callable[..., Any]:
        """The predict function ``name``, with the run's weights bound."""
        if name not in self.predict:
            raise RunSpecError(f"{self.spec.workdir} holds a {self.spec.kind} run, which has no {name!r} "
                               f"function (it has {sorted(self.predict)})")
        jitted = self.predict[name]
        return lambda *args, **kwargs: jitted(self.variables, *args, **kwargs)

    def generate_tiles(self, z_maps: np.ndarray, key: jax.Array, given: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (B, t, t, C_out) for standardized parameter maps; see the module docstring."""
        if bool(self.spec.input_channels) != (given is not None):
            raise RunSpecError(f"{self.spec.workdir} draws around {list(self.spec.input_channels) or 'nothing'}; "
                               "given channels must be passed exactly when it does")
        return np.asarray(self.fn("generate")(jnp.asarray(z_maps, jnp.float32), key,
                                              None if given is None else jnp.asarray(given)))

    def embed_tiles(self, tiles: np.ndarray, batch: int = 64) -> np.ndarray:
        """``embed`` of uint8 tiles, a batch at a time."""
        embed = self.fn("embed")
        return np.concatenate([np.asarray(embed(jnp.asarray(tiles[i:i + batch])))
                               for i in range(0, len(tiles), batch)]) if len(tiles) else np.zeros((0, 0))

    def encode_tiles(self, tiles: np.ndarray, z_params: np.ndarray, batch: int = 64) -> np.ndarray:
        """Posterior means of uint8 tiles (``encode``), a batch at a time."""
        encode = self.fn("encode")
        return np.concatenate([np.asarray(encode(jnp.asarray(tiles[i:i + batch]), jnp.asarray(z_params[i:i + batch]))[0])
                               for i in range(0, len(tiles), batch)])


def load_run(workdir: str | Path, step: int | Literal["best", "latest"] = "best") -> TrainedModel:
    """Load a run written by ``experiments/train.py`` for inference.

    Parameters
    ----------
    workdir
        The run directory (it holds ``checkpoints/``).
    step
        ``best`` (by the run's validation metric; the latest when none was
        recorded), ``latest``, or a step number.

    Raises
    ------
    RunSpecError
        If the folder holds no checkpoint (or not the step asked for).
    """
    import orbax.checkpoint as ocp

    from urbangen.training.checkpoints import Checkpointer

    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise RunSpecError(f"{workdir} is not a trained run (no checkpoints/ folder); train one with "
                           "experiments/train.py or urbangen quickstart")
    probe = Checkpointer(workdir / "checkpoints")
    try:
        latest = probe.latest_step()
        if latest is None:
            raise RunSpecError(f"no checkpoint in {workdir / 'checkpoints'}")
        best_metric = probe.restore_meta(latest).get("best_metric")
    finally:
        probe.close()
    checkpointer = Checkpointer(workdir / "checkpoints", best_metric=best_metric)
    try:
        if step == "best":
            chosen = checkpointer.best_step() if best_metric else None
            chosen = latest if chosen is None else chosen
        elif step == "latest":
            chosen = latest
        else:
            chosen = int(step)
            if chosen not in checkpointer.all_steps():
                raise RunSpecError(f"{workdir} has no checkpoint at step {chosen}; it has {checkpointer.all_steps()}")
        # No target: the arrays come back as saved, so nothing of the training state needs building.
        restored = checkpointer.manager.restore(chosen, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    finally:
        checkpointer.close()
    meta = dict(restored["meta"])
    return model_from_state(ml_collections.ConfigDict(meta["config"]), meta["spec"], restored["state"],
                            workdir=str(workdir), step=int(meta["step"]), dataset=str(meta.get("dataset", "")),
                            split=meta.get("split"))


def model_from_state(config: ml_collections.ConfigDict, data_spec: dict[str, Any], state: Any, *,
                     workdir: str = "(in memory)", step: int = 0, dataset: str = "",
                     split: dict[str, Any] | None = None) -> TrainedModel:
    """A :class:`TrainedModel` from a config, the data spec a trainer records and a train state.

    :func:`load_run` uses it on a restored checkpoint; benchmarks use it on freshly initialised weights.
    """
    build = _BUILDERS.get(config.model)
    if build is None:
        raise RunSpecError(f"{workdir} holds an unknown model {config.model!r}")
    scaler = ParameterScaler.from_dict(data_spec["scaler"])
    fields: dict[str, Any] = dict(
        kind=config.model, workdir=workdir, step=step, dataset=dataset,
        channels=tuple(data_spec["channels"]), tile_px=int(data_spec["tile_px"]),
        meters_per_pixel=float(data_spec["meters_per_pixel"]), parameter_names=tuple(data_spec["parameters"]),
        scaler_mean=scaler.mean, scaler_std=scaler.std, split=split, config=config.to_dict())
    variables, predict, extra = build(config, fields, state)
    return TrainedModel(RunSpec(**fields, **extra), jax.device_put(variables), predict)


def _dtype(config: ml_collections.ConfigDict) -> Any:
    return jnp.bfloat16 if config.precision == "bfloat16" else jnp.float32


def _pix2pix(config: ml_collections.ConfigDict, fields: dict[str, Any], state: dict) -> tuple:
    from urbangen.models.pix2pix import generator_from_config

    cfg = config.pix2pix
    channels = list(fields["channels"])
    inputs = list(cfg.input_channels)
    outputs = list(cfg.output_channels) or [c for c in channels if c not in inputs]
    generator = generator_from_config(cfg, fields["tile_px"], len(outputs), _dtype(config))

    def generate(variables, z_maps, key, given=None):
        cond = z_maps if given is None else jnp.concatenate([z_maps, layout_to_signed(given)], axis=-1)
        # Dropout stays on at test time, as pix2pix's only source of sample-to-sample variation.
        out = generator.apply(variables, cond, train=False, dropout=True, rngs={"dropout": key})
        return (out.astype(jnp.float32) + 1.0) / 2.0

    variables = {"params": state["g"]["params"], "batch_stats": state["g"]["batch_stats"]}
    extra = dict(input_channels=tuple(inputs), output_channels=tuple(outputs), sampling="threshold")
    return variables, {"generate": jax.jit(generate)}, extra


def _vae(config: ml_collections.ConfigDict, fields: dict[str, Any], state: dict) -> tuple:
    from urbangen.models.vae import ConditionalVAE, vae_from_config

    cfg = config.vae
    model = vae_from_config(cfg, len(fields["channels"]), _dtype(config))

    def decode(variables, z, z_params):
        logits = model.apply(variables, z, z_params, fields["tile_px"], method=ConditionalVAE.decode)
        return jax.nn.sigmoid(logits.astype(jnp.float32))

    def generate(variables, z_maps, key, given=None):
        # One latent from the prior per tile, conditioned on the tile's mean parameters.
        params = z_maps.mean(axis=(1, 2))
        return decode(variables, jax.random.normal(key, (params.shape[0], cfg.latent_dim)), params)

    def encode(variables, tiles, z_params):
        return model.apply(variables, layout_to_signed(tiles), z_params, method=ConditionalVAE.encode)

    extra = dict(output_channels=tuple(fields["channels"]), sampling="bernoulli", conditional=bool(cfg.conditional))
    return {"params": state["params"]}, {"generate": jax.jit(generate), "encode": jax.jit(encode),
                                  "decode": jax.jit(decode)}, extra


def _encoder(config: ml_collections.ConfigDict, fields: dict[str, Any], state: dict) -> tuple:
    from urbangen.models.encoder import LayoutEncoder, encoder_from_config

    model = encoder_from_config(config.encoder, fields["tile_px"], len(fields["channels"]),
                                len(fields["parameter_names"]), _dtype(config))

    def embed(variables, tiles):
        return model.apply(variables, layout_to_signed(tiles), method=LayoutEncoder.embed).astype(jnp.float32)

    return {"params": state["params"]}, {"embed": jax.jit(embed)}, {}


#: Each model kind's builder: (config, spec fields, restored state) -> (variables, predict functions, spec fields).
_BUILDERS: dict[str, Callable[..., tuple]] = {"pix2pix": _pix2pix, "vae": _vae, "encoder": _encoder}
