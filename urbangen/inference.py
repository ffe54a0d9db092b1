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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pydantic

from data_pipeline.errors import RunSpecError
from urbangen.conditioning import ParameterScaler, channel_indices, layout_to_signed
from urbangen.footprints import rectangular_stage
from urbangen.proximity import (
    PATH_CHANNELS,
    PATH_LEVELS,
    ROAD_CHANNELS,
    SKELETON_LEVEL,
    decode_proximity,
    join_gaps,
    meet_streets,
    run_through,
    tidy_roads,
)
from urbangen.specks import speckless_stage

#: How a generator's probabilities become a 0/1 layout: ``bernoulli`` samples them with spatially
#: correlated noise (a VAE's blurry probabilities), ``threshold`` takes p > 0.5 (pix2pix's tanh output),
#: ``proximity`` decodes proximity fields into street cores and ridges (:mod:`urbangen.proximity`).
Sampling = Literal["bernoulli", "threshold", "proximity"]
#: The samplings that need no randomness: those a chain's stages may have.
DETERMINISTIC = ("threshold", "proximity")


class Scorer(Protocol):
    """Rates layouts (M, t, t, C) for their standardized requests (M, P) and tiles' seeds (M,; None: no real
    tile's scatter in the targets), lower better; the street network's form weighs more where ``weighted``
    (None: where seeds are given), by ``weights`` where given (by parameter name, the rest 1). See
    :func:`urbangen.generate.selection.parameter_errors`."""

    def __call__(self, stage: TrainedModel, layouts: np.ndarray, requested: np.ndarray,
                 seeds: np.ndarray | None = None, /, *, weighted: bool | None = None,
                 weights: Mapping[str, float] | None = None) -> np.ndarray: ...


#: A chain's sampling by selection: (samples per tile, scorer); see :mod:`urbangen.generate.selection`.
Selection = tuple[int, Scorer]
#: Where a chain's later stage draws a channel an earlier stage drew, the earlier stage's stands and the later
#: one's pixels go to this channel (dropped when it has none): the arterial stage decides where the major roads
#: run, and the street stage's own pieces of major road become minor streets, which keeps its network whole.
DEMOTED = {"major_roads": "minor_roads"}


#: Folded into a stage's or window's key for its tiles' target seeds: no sampling key is folded with it.
SEED_TAG = 0x7FFF0000


def tile_seeds(key: jax.Array, n: int) -> np.ndarray:
    """``n`` seeds, one per tile a scorer rates: the draw of its target (shared by the tile's candidates)."""
    return np.asarray(jax.random.bits(jax.random.fold_in(key, SEED_TAG), (n,), jnp.uint32)).astype(np.int64)


def deterministic_layout(probs: np.ndarray, spec: RunSpec, *, stitched: bool = False,
                         window: bool = False, path_level: float | np.ndarray | None = None,
                         road_level: float | np.ndarray | None = None) -> np.ndarray:
    """The 0/1 layout (..., H, W, C) of a ``threshold`` or ``proximity`` generator's output.

    A proximity stage's decoded roads run on through the paths that carry them to the next road
    (:func:`urbangen.proximity.run_through`), and the network is tidied
    (:func:`urbangen.proximity.tidy_roads`). When
    ``stitched`` (``probs`` blend overlapping tiles, :mod:`urbangen.generate.sampler`) its pieces are
    joined first, across the gaps where the tiles disagreed (:func:`urbangen.proximity.join_gaps`), and
    its roads' free ends run on to the streets they point at last, where the blend broke a street within
    one piece (:func:`urbangen.proximity.meet_streets`). A single tile has no such gaps: it is not
    joined, and its roads run on through paths only. A ``window`` of a stitched layout, scored as blended so
    far (before the tiles drawn after it), is decoded, neither run through nor tidied: its edges are not the
    layout's, its streets run on into its neighbours' (tidied as tiles, the windows chosen for two 2 x 2 km
    layouts kept 0.75 of their street pixels in the largest piece of each 1 km window, against 0.80
    untidied and real 0.86).

    A proximity stage's cycle and foot paths are decoded at ``path_level`` and its roads at ``road_level``
    (None: ``urbangen.proximity.SKELETON_LEVEL``; a map (H, W): each pixel's): see :func:`best_path_levels` and
    :func:`urbangen.generate.sampler._street_levelled`.
    """
    if spec.sampling == "threshold":
        return (np.asarray(probs) > 0.5).astype(np.uint8)
    if spec.sampling == "proximity":
        layout = decode_proximity(probs, _channel_levels(spec, path_level, road_level))
        if window:
            return layout
        out = list(spec.output_channels)
        roads = [out.index(c) for c in ROAD_CHANNELS if c in out]
        paths = [out.index(c) for c in PATH_CHANNELS if c in out]
        if stitched:
            layout = join_gaps(layout)
        layout = tidy_roads(run_through(layout, roads, paths), roads, paths)
        return meet_streets(layout, roads, paths) if stitched else layout
    raise RunSpecError(f"a {spec.sampling!r} generator's output needs randomness to become a layout")


def _channel_levels(spec: RunSpec, path_level: float | np.ndarray | None,
                    road_level: float | np.ndarray | None = None) -> float | np.ndarray:
    """The skeleton level of each of a proximity stage's channels (C,), its paths' at ``path_level`` and its
    roads' at ``road_level`` (None: the default); with maps of levels (H, W), one for each pixel and channel
    (H, W, C)."""
    paths = path_level if path_level is not None and draws_paths(spec) else None
    if paths is None and road_level is None:
        return SKELETON_LEVEL
    out = list(spec.output_channels)
    path = np.asarray(SKELETON_LEVEL if paths is None else paths, np.float32)[..., None]
    road = np.asarray(SKELETON_LEVEL if road_level is None else road_level, np.float32)[..., None]
    return np.where(np.isin(out, PATH_CHANNELS), path,
                    np.where(np.isin(out, ROAD_CHANNELS), road, np.float32(SKELETON_LEVEL)))


def draws_paths(spec: RunSpec) -> bool:
    """Whether a stage's output is a proximity stage's street network with cycle and foot paths in it."""
    return spec.sampling == "proximity" and any(c in spec.output_channels for c in PATH_CHANNELS)


def best_path_levels(stage: TrainedModel, probs: np.ndarray, layout: np.ndarray, requested: np.ndarray,
                     seeds: np.ndarray, scorer: Scorer) -> np.ndarray:
    """Each chosen tile's layout with its cycle and foot paths decoded at the level of
    :data:`urbangen.proximity.PATH_LEVELS` at which ``scorer`` rates it best (the first, ``layout`` as it is,
    on a tie).

    Parameters
    ----------
    stage
        The proximity stage that drew ``probs``.
    probs
        (B, t, t, C) the chosen samples' fields.
    layout
        (B, t, t, C) their 0/1 layouts at the default level.
    requested
        (B, P) the tiles' standardized requests.
    seeds
        (B,) the tiles' seeds, as they were scored when chosen.
    scorer
        The selection's scorer.
    """
    layouts = np.stack([layout] + [deterministic_layout(probs, stage.spec, path_level=level)
                                   for level in PATH_LEVELS[1:]])
    errors = np.stack([np.asarray(scorer(stage, one, requested, seeds)) for one in layouts])
    return layouts[np.argmin(errors, axis=0), np.arange(len(layout))]


def stage_outputs(probs: np.ndarray, spec: RunSpec, *, stitched: bool = False, layout: np.ndarray | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A chain stage's 0/1 channels by name (what the next stage draws around), and what the chain outputs
    for them: a thresholded stage's probabilities, or a proximity stage's decoded 0/1 layout
    (:func:`deterministic_layout`, ``stitched`` as there; ``layout``: that layout, when already made).
    """
    if layout is None:
        layout = deterministic_layout(probs, spec, stitched=stitched)
    drawn = {c: layout[..., j] for j, c in enumerate(spec.output_channels)}
    out = probs if spec.sampling == "threshold" else layout.astype(np.float32)
    return drawn, {c: out[..., j] for j, c in enumerate(spec.output_channels)}


class RunSpec(pydantic.BaseModel):
    """What a trained run needs from data and gives back: recorded in every checkpoint's metadata."""

    model_config = pydantic.ConfigDict(frozen=True)

    kind: Literal["pix2pix", "vae", "encoder", "chain"]
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
    #: A generator's latent map (pix2pix with a latent): channels (0 = none) and tile pixels per cell.
    latent_channels: int = 0
    latent_stride: int = 1
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

    def generate_tiles(self, z_maps: np.ndarray, key: jax.Array, given: np.ndarray | None = None,
                       latent: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (B, t, t, C_out) for standardized parameter maps; see the module docstring.

        ``latent``: (B, t / stride, t / stride, k) latent maps for a model
        with one (drawn from the prior with ``key`` when None).
        """
        if bool(self.spec.input_channels) != (given is not None):
            raise RunSpecError(f"{self.spec.workdir} draws around {list(self.spec.input_channels) or 'nothing'}; "
                               "given channels must be passed exactly when it does")
        return np.asarray(self.fn("generate")(jnp.asarray(z_maps, jnp.float32), key,
                                              None if given is None else jnp.asarray(given),
                                              None if latent is None else jnp.asarray(latent, jnp.float32)))

    def embed_tiles(self, tiles: np.ndarray, batch: int = 64) -> np.ndarray:
        """``embed`` of uint8 tiles, a batch at a time."""
        embed = self.fn("embed")
        return np.concatenate([np.asarray(embed(jnp.asarray(tiles[i:i + batch])))
                               for i in range(0, len(tiles), batch)]) if len(tiles) else np.zeros((0, 0))

    def encode_tiles(self, tiles: np.ndarray, z_params: np.ndarray, batch: int = 64) -> np.ndarray:
        """Posterior means of uint8 tiles (``encode``), a batch at a time."""
        encode = self.fn("encode")
        return np.concatenate([np.asarray(encode(jnp.asarray(tiles[i:i + batch]),
                                                 jnp.asarray(z_params[i:i + batch]))[0])
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

    from urbangen.checkpoints import Checkpointer

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
    predict, extra, variables_of = build(config, fields)
    return TrainedModel(RunSpec(**fields, **extra), jax.device_put(variables_of(state)), predict)


def model_from_spec(spec: RunSpec, variables: Any) -> TrainedModel:
    """A :class:`TrainedModel` from a run spec and the weights it names (an exported model's contents)."""
    config = ml_collections.ConfigDict(spec.config)
    build = _BUILDERS.get(spec.kind)
    if build is None:
        raise RunSpecError(f"{spec.workdir} holds an unknown model {spec.kind!r}")
    predict, _, _ = build(config, spec.model_dump())
    return TrainedModel(spec, jax.device_put(variables), predict)


def _dtype(config: ml_collections.ConfigDict) -> Any:
    return jnp.bfloat16 if config.precision == "bfloat16" else jnp.float32


def _pix2pix(config: ml_collections.ConfigDict, fields: dict[str, Any]) -> tuple:
    from urbangen.models.pix2pix import generator_from_config, upsample_latent

    cfg = config.pix2pix
    channels = list(fields["channels"])
    inputs = list(cfg.input_channels)
    outputs = list(cfg.output_channels) or [c for c in channels if c not in inputs]
    generator = generator_from_config(cfg, fields["tile_px"], len(outputs), _dtype(config))
    latent_channels = int(cfg.get("latent_channels", 0))
    stride = int(cfg.get("latent_stride", 1)) if latent_channels else 1
    upsample = cfg.get("latent_upsample", "nearest")

    def generate(variables, z_maps, key, given=None, latent=None):
        cond = z_maps if given is None else jnp.concatenate([z_maps, layout_to_signed(given)], axis=-1)
        if latent_channels:
            # The latent map is the noise source; a layout larger than a tile passes one shared field.
            if latent is None:
                side = fields["tile_px"] // stride
                latent = jax.random.normal(key, (z_maps.shape[0], side, side, latent_channels))
            out = generator.apply(variables,
                                  jnp.concatenate([cond, upsample_latent(latent, stride, upsample)], axis=-1),
                                  train=False, dropout=False)
        else:
            # Dropout stays on at test time, as pix2pix's only source of sample-to-sample variation.
            out = generator.apply(variables, cond, train=False, dropout=True, rngs={"dropout": key})
        return (out.astype(jnp.float32) + 1.0) / 2.0

    sampling = "proximity" if cfg.get("target", "mask") == "proximity" else "threshold"
    extra = dict(input_channels=tuple(inputs), output_channels=tuple(outputs), sampling=sampling,
                 latent_channels=latent_channels, latent_stride=stride)
    return ({"generate": jax.jit(generate)}, extra,
            lambda state: {"params": state["g"]["params"], "batch_stats": state["g"]["batch_stats"]})


#: The collection of a VAE's variables that holds its learned latent prior (:mod:`urbangen.latent_prior`).
LATENT_PRIOR = "latent_prior"


def sample_mixture(prior: dict[str, jnp.ndarray], key: jax.Array, n: int) -> jnp.ndarray:
    """``n`` draws (n, d) of a Gaussian mixture: ``log_weights`` (k,), ``means`` (k, d), ``scale_tril`` (k, d, d)."""
    pick, noise = jax.random.split(key)
    component = jax.random.categorical(pick, prior["log_weights"], shape=(n,))
    eps = jax.random.normal(noise, (n, prior["means"].shape[1]))
    return prior["means"][component] + jnp.einsum("nij,nj->ni", prior["scale_tril"][component], eps)


def _vae(config: ml_collections.ConfigDict, fields: dict[str, Any]) -> tuple:
    from urbangen.models.vae import ConditionalVAE, vae_from_config

    cfg = config.vae
    outputs = list(cfg.get("output_channels", ())) or list(fields["channels"])
    out_idx = channel_indices(fields["channels"], outputs)
    model = vae_from_config(cfg, len(outputs), _dtype(config))

    def decode(variables, z, z_params):
        logits = model.apply({"params": variables["params"]}, z, z_params, fields["tile_px"],
                             method=ConditionalVAE.decode)
        return jax.nn.sigmoid(logits.astype(jnp.float32))

    def latents(variables, key, n):
        # From N(0, I), or from the mixture fitted to the training tiles' posterior means where the model
        # carries one (urbangen.latent_prior).
        prior = variables.get(LATENT_PRIOR)
        return (jax.random.normal(key, (n, cfg.latent_dim)) if prior is None
                else sample_mixture(prior, key, n))

    def generate(variables, z_maps, key, given=None, latent=None):
        # One latent per tile, conditioned on the tile's mean parameters.
        params = z_maps.mean(axis=(1, 2))
        return decode(variables, latents(variables, key, params.shape[0]), params)

    def continue_drawn(variables, z, z_params, drawn, known, steps, learning_rate, anchor):
        # Latents z (B, d) moved by Adam, for ``steps`` steps, so that their decoded fields match ``drawn``
        # where ``known`` (B, t, t, 1 or C) weighs it, staying near where they started (anchor * mean (z - z0)^2).
        tx = optax.adam(learning_rate)

        def loss(zz):
            misfit = known * (decode(variables, zz, z_params) - drawn) ** 2
            return (misfit.sum() / (jnp.broadcast_to(known, drawn.shape).sum() + 1e-6)
                    + anchor * jnp.mean((zz - z) ** 2))

        def step(carry, _):
            zz, opt = carry
            updates, opt = tx.update(jax.grad(loss)(zz), opt)
            return (optax.apply_updates(zz, updates), opt), None

        (moved, _), _ = jax.lax.scan(step, (z, tx.init(z)), None, length=steps)
        return moved

    def encode(variables, tiles, z_params):
        return model.apply({"params": variables["params"]}, layout_to_signed(tiles[..., out_idx]), z_params,
                           method=ConditionalVAE.encode)

    # A proximity VAE's randomness is its latent: its fields decode without more (urbangen.proximity).
    sampling = "proximity" if cfg.get("target", "mask") == "proximity" else "bernoulli"
    extra = dict(output_channels=tuple(outputs), sampling=sampling, conditional=bool(cfg.conditional))
    return ({"generate": jax.jit(generate), "encode": jax.jit(encode), "decode": jax.jit(decode),
             "latents": jax.jit(latents, static_argnums=2),
             "continue_drawn": jax.jit(continue_drawn, static_argnums=(5, 6, 7))}, extra,
            lambda state: {"params": state["params"]})


def _encoder(config: ml_collections.ConfigDict, fields: dict[str, Any]) -> tuple:
    from urbangen.models.encoder import LayoutEncoder, encoder_from_config

    model = encoder_from_config(config.encoder, fields["tile_px"], len(fields["channels"]),
                                len(fields["parameter_names"]), _dtype(config))

    def embed(variables, tiles):
        return model.apply(variables, layout_to_signed(tiles), method=LayoutEncoder.embed).astype(jnp.float32)

    return {"embed": jax.jit(embed)}, {}, lambda state: {"params": state["params"]}


#: Each model kind's builder: (config, spec fields) -> (predict functions, extra spec fields, the
#: function that takes the weights inference needs out of a train state).
_BUILDERS: dict[str, Callable[..., tuple]] = {"pix2pix": _pix2pix, "vae": _vae, "encoder": _encoder}


@dataclass(frozen=True)
class GeneratorChain:
    """Generators run in order, each drawing around what the earlier ones drew: streets, then buildings.

    It answers what generation and evaluation ask of a :class:`TrainedModel`:
    a ``spec`` (the union of the stages' parameters and output channels; it
    draws around nothing, or around its ``input_channels`` when it was made
    ``given`` them) and :meth:`generate_tiles`. Standardized
    parameter maps arrive in the order of ``spec.parameter_names``; each
    stage reads its own columns, standardized by its own scaler.
    """

    stages: tuple[TrainedModel, ...]
    spec: RunSpec
    predict: dict[str, Callable[..., Any]] = field(repr=False)
    #: Samples drawn of each stage per tile, of which ``scorer`` keeps the best (1: the first, no scoring).
    candidates: int = 1
    #: ``scorer(stage, layouts, requested, seeds)``: one error per 0/1 layout (M, t, t, C_stage_out) against its
    #: standardized request (M, P_stage), for its tile's seed (M,), lower is better
    #: (:mod:`urbangen.generate.selection`).
    scorer: Scorer | None = field(default=None, repr=False)
    #: Whether a thresholded stage that draws buildings hands on its kept sample with its compact, house-sized
    #: footprints redrawn as rectangles (:mod:`urbangen.footprints`); False: as the model drew them.
    rectangular_footprints: bool = True

    @classmethod
    def of(cls, name: str, stages: tuple[TrainedModel, ...], given: tuple[str, ...] = ()) -> GeneratorChain:
        """Chain ``stages``; each stage's given channels must be drawn by an earlier one, or be among
        ``given``: channels the chain draws around (a street network the user gives), its ``input_channels``.

        The last stage sets the chain's tiles. Stages before the first at its
        scale may draw at a whole multiple of its metres per pixel, over at
        least as much ground (the arterial stage: 1 km at 16 m/px before 256 m
        tiles at 4 m/px); their lines are redrawn at the chain's scale
        (:func:`urbangen.upscale.upscale_lines`).
        """
        last = stages[-1].spec
        drawn: list[str] = list(given)
        seen_at_scale = False
        for stage in stages:
            s = stage.spec
            if set(s.output_channels) & set(given):
                raise RunSpecError(f"{name}: stage {s.workdir} draws {sorted(set(s.output_channels) & set(given))}, "
                                   "which the chain is given")
            missing = [c for c in s.input_channels if c not in drawn]
            if missing or s.sampling not in DETERMINISTIC:
                raise RunSpecError(f"{name}: stage {s.workdir} draws around {missing or 'nothing'} that no earlier "
                                   f"stage draws, or samples by {s.sampling!r} (chains need stages in {DETERMINISTIC})")
            factor = s.meters_per_pixel / last.meters_per_pixel
            if math.isclose(factor, 1.0):
                factor = 1.0
                seen_at_scale = True
            elif seen_at_scale:
                raise RunSpecError(f"{name}: stage {s.workdir} draws at {s.meters_per_pixel:g} m/px after a stage at "
                                   f"{last.meters_per_pixel:g} m/px; stages at a coarser scale come first")
            if factor == 1 and (s.tile_px, s.channels) != (last.tile_px, last.channels):
                raise RunSpecError(f"{name}: stage {s.workdir} has other tiles or channels than {last.workdir}")
            if factor != 1 and (not math.isclose(factor, round(factor)) or factor < 1 or s.tile_m < last.tile_m
                                or s.input_channels
                                or s.sampling != "proximity"):
                raise RunSpecError(f"{name}: stage {s.workdir} draws at {s.meters_per_pixel:g} m/px over "
                                   f"{s.tile_m:g} m; a stage at another scale than {last.workdir}'s "
                                   f"{last.meters_per_pixel:g} m/px must draw lines (proximity) around nothing, at a "
                                   "whole multiple of it, over at least its tile")
            drawn += [c for c in s.output_channels if c not in drawn]
        # The chain standardizes a parameter as the first stage at its scale that reads it does (the arterial
        # stage's scaler, fitted on 1 km windows, is not the street stage's); see stage_maps.
        names: list[str] = []
        mean: list[float] = []
        std: list[float] = []
        at_scale = [st for st in stages if math.isclose(st.spec.meters_per_pixel, last.meters_per_pixel)]
        for stage in at_scale + [st for st in stages if not math.isclose(st.spec.meters_per_pixel,
                                                                             last.meters_per_pixel)]:
            s = stage.spec
            for p, m, sd in zip(s.parameter_names, s.scaler_mean, s.scaler_std):
                if p not in names:
                    names.append(p)
                    mean.append(m)
                    std.append(sd)
        spec = RunSpec(kind="chain", workdir=name, step=max(st.spec.step for st in stages), dataset=last.dataset,
                       channels=last.channels, input_channels=tuple(given),
                       output_channels=tuple(c for c in drawn if c not in given), tile_px=last.tile_px,
                       meters_per_pixel=last.meters_per_pixel, parameter_names=tuple(names),
                       scaler_mean=tuple(mean), scaler_std=tuple(std), sampling="threshold", split=last.split,
                       config={"stages": [st.spec.model_dump(exclude={"split"}) for st in stages]})
        return cls(stages, spec, {"generate": cls.generate_tiles})

    def factor(self, stage: TrainedModel) -> int:
        """The chain's pixels per pixel of ``stage``, along each side (1: it draws at the chain's scale)."""
        return int(round(stage.spec.meters_per_pixel / self.spec.meters_per_pixel))

    @property
    def tile_stages(self) -> tuple[TrainedModel, ...]:
        """The stages at the chain's scale, in order: those that draw single tiles (see :meth:`generate_tiles`).
        Stage ``i`` of them samples with ``fold_in(key, i)``, in tiles and layouts alike."""
        return tuple(st for st in self.stages if self.factor(st) == 1)

    def selecting(self, candidates: int, scorer: Scorer | None) -> GeneratorChain:
        """This chain drawing ``candidates`` samples of each stage per tile and keeping the one ``scorer``
        rates best (sampling by selection; 1 or no scorer: one sample, as drawn)."""
        if candidates < 1:
            raise RunSpecError(f"candidates must be at least 1, not {candidates}")
        return replace(self, candidates=int(candidates), scorer=scorer)

    @property
    def selection(self) -> Selection | None:
        """``(candidates, scorer)`` when this chain samples by selection, else None."""
        return (self.candidates, self.scorer) if self.scorer is not None and self.candidates > 1 else None

    def around_given(self) -> GeneratorChain:
        """The stages that draw around given channels, as a chain given them (sampling by selection as this
        chain does): what draws around a street network the user gives."""
        if self.spec.input_channels:
            return self
        rest = tuple(st for st in self.stages if st.spec.input_channels)
        if not rest:
            raise RunSpecError(f"{self.spec.workdir} has no stage that draws around a given network")
        drawn: set[str] = set()
        needed: list[str] = []
        for st in rest:  # what no earlier stage of them draws
            needed += [c for c in st.spec.input_channels if c not in drawn and c not in needed]
            drawn |= set(st.spec.output_channels)
        given = tuple(needed)
        return replace(GeneratorChain.of(self.spec.workdir, rest, given).selecting(self.candidates, self.scorer),
                       rectangular_footprints=self.rectangular_footprints)

    def given_channels(self, given: np.ndarray | None) -> dict[str, np.ndarray]:
        """The chain's given channels by name, as 0/1 uint8 (..., H, W) arrays: where its stages start drawing."""
        names = self.spec.input_channels
        if (given is None) != (not names) or (given is not None and np.shape(given)[-1] != len(names)):
            raise RunSpecError(f"{self.spec.workdir} draws around {list(names) or 'nothing'}: given channels must "
                               f"be passed exactly when it does, {len(names)} of them, not "
                               f"{'none' if given is None else np.shape(given)[-1]}")
        return {} if given is None else {c: np.asarray(given)[..., i].astype(np.uint8) for i, c in enumerate(names)}

    def columns(self, stage: TrainedModel) -> list[int]:
        """Positions of a stage's parameters in ``spec.parameter_names``."""
        return [self.spec.parameter_names.index(p) for p in stage.spec.parameter_names]

    def stage_maps(self, stage: TrainedModel, z: np.ndarray) -> np.ndarray:
        """A stage's parameter maps (..., P_stage), standardized as it was trained, from the chain's (..., P).

        A stage whose scaler differs from the chain's for its parameters (the
        arterial stage's, fitted on 1 km windows) gets them in its own: a
        parameter the chain was asked for as unknown (0, the chain's mean) is
        asked of it as that value."""
        cols = self.columns(stage)
        mean, std = np.asarray(self.spec.scaler_mean)[cols], np.asarray(self.spec.scaler_std)[cols]
        own = stage.spec.scaler
        if np.array_equal(mean, own.mean) and np.array_equal(std, own.std):
            return z[..., cols]
        return own.transform(np.asarray(z[..., cols], np.float64) * std + mean)

    def fn(self, name: str) -> Callable[..., Any]:
        if name != "generate":
            raise RunSpecError(f"{self.spec.workdir} is a chain of generators, which has no {name!r} function")
        return self.generate_tiles

    def generate_tiles(self, z_maps: np.ndarray, key: jax.Array, given: np.ndarray | None = None,
                       latent: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (B, t, t, C_out) of every stage's channels, each stage on the earlier ones' 0/1 layout.

        A ``proximity`` stage's channels come back decoded, as 0/1 (thresholding them again changes nothing).

        Tiles are drawn by the stages at the chain's scale alone. A coarser
        stage (the arterial stage) draws where a road runs beyond the tile; a
        tile cut from the middle of its 1 km window has a major road or not by
        where it fell, whatever the tile asked for: tried on 128 validation
        tiles, even with the window of 16 whose middle carried the tile's
        major-road density kept, Fréchet distance 17.1 against 2.8 without it,
        intersection density's W1 4.6 x its floor against 0.7 x. Layouts
        (:func:`urbangen.generate.sampler.generate_layout`) run every stage.
        """
        if latent is not None:
            raise RunSpecError(f"{self.spec.workdir} is a chain of generators: it takes no latent")
        drawn = self.given_channels(given)
        out: dict[str, np.ndarray] = {}
        for i, stage in enumerate(self.tile_stages):
            s = stage.spec
            stage_given = np.stack([drawn[c] for c in s.input_channels], axis=-1) if s.input_channels else None
            z = self.stage_maps(stage, z_maps)
            layout = None
            if self.selection is None:
                probs = stage.generate_tiles(z, jax.random.fold_in(key, i), stage_given)
            else:  # tile b's candidates are rows b * k .. b * k + k - 1
                k, scorer = self.selection
                z = np.repeat(z, k, axis=0)
                probs = stage.generate_tiles(z, jax.random.fold_in(key, i),
                                             None if stage_given is None else np.repeat(stage_given, k, axis=0))
                seeds = np.repeat(tile_seeds(jax.random.fold_in(key, i), len(z) // k), k)
                layouts = deterministic_layout(probs, s)
                errors = scorer(stage, layouts, z.mean(axis=(1, 2)), seeds)
                best = np.argmin(np.asarray(errors).reshape(-1, k), axis=1)
                probs = probs.reshape(-1, k, *probs.shape[1:])[np.arange(len(best)), best]
                layout = layouts.reshape(-1, k, *layouts.shape[1:])[np.arange(len(best)), best]
                if draws_paths(s):
                    layout = best_path_levels(stage, probs, layout, z.mean(axis=(1, 2))[::k], seeds[::k], scorer)
            # The kept sample's, after its choice: the areas it was scored on stay. Specks first: a speck of
            # water is no ground a footprint must keep clear of.
            probs, layout = speckless_stage(probs, layout, s)
            if self.rectangular_footprints:
                probs, layout = rectangular_stage(probs, layout, s, drawn)
            merge_stage(drawn, out, *stage_outputs(probs, s, layout=layout))
        blank = np.zeros(z_maps.shape[:3], np.float32)  # a channel only a coarser stage draws
        return np.stack([out.get(c, blank) for c in self.spec.output_channels], axis=-1)


def merge_stage(drawn: dict[str, np.ndarray], out: dict[str, np.ndarray], stage_drawn: dict[str, np.ndarray],
                stage_out: dict[str, np.ndarray]) -> None:
    """Add a chain stage's 0/1 channels (``stage_drawn``) and outputs to the chain's so far, in place.

    A channel an earlier stage drew keeps the earlier stage's pixels; the
    stage's own go to its :data:`DEMOTED` channel (where the stage draws one).
    """
    earlier = set(drawn)
    for c in stage_drawn:
        if c not in earlier:
            drawn[c], out[c] = stage_drawn[c], stage_out[c]
    for c in stage_drawn:
        target = DEMOTED.get(c)
        if c in earlier and target in stage_drawn and target not in earlier:
            free = drawn[c] == 0  # the earlier stage's pixels stay its own
            drawn[target] = np.maximum(drawn[target], stage_drawn[c] * free).astype(np.uint8)
            out[target] = np.maximum(out[target], stage_out[c] * free)


#: What generates layouts: one model, or a chain of them (both have ``spec``, ``predict`` and ``generate_tiles``).
Generator = TrainedModel | GeneratorChain
