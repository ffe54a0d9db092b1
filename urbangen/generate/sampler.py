"""Generate a layout of any size from a checkpoint: overlapping tiles, blended without seams.

Tiles are laid at half-tile strides and averaged with a squared-sine window
that falls towards each tile's border, so every pixel is a smooth blend of
the tiles that cover it and no tile edge shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from urbangen.conditioning import ParameterScaler, layout_to_signed
from urbangen.training.tasks import load_trained


@dataclass
class LayoutGenerator:
    """A loaded generative checkpoint (pix2pix or VAE) and what generation needs from it."""

    task: Any
    state: Any
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.task.name

    @property
    def meters_per_pixel(self) -> float:
        return float(self.meta["spec"]["meters_per_pixel"])

    @property
    def tile_px(self) -> int:
        return int(self.meta["spec"]["tile_px"])

    @property
    def parameter_names(self) -> list[str]:
        return list(self.meta["spec"]["parameters"])

    @property
    def scaler(self) -> ParameterScaler:
        return ParameterScaler.from_dict(self.meta["spec"]["scaler"])

    @property
    def input_channels(self) -> list[str]:
        return list(getattr(self.task, "input_channels", []))

    @property
    def output_channels(self) -> list[str]:
        return list(getattr(self.task, "output_channels", self.task.channels))


def load_generator(workdir, step: int | str = "best") -> LayoutGenerator:
    """Load a pix2pix or VAE run's checkpoint (``best``, ``latest`` or a step)."""
    if step in ("best", "latest"):
        task, state, meta = load_trained(workdir, best=step == "best")
    else:
        task, state, meta = load_trained(workdir, int(step))
    if task.name not in ("pix2pix", "vae"):
        raise ValueError(f"{workdir} holds a {task.name} checkpoint, which does not generate layouts")
    return LayoutGenerator(task, state, meta)


def tile_offsets(n: int, tile: int) -> list[int]:
    """Tile starts along one axis of ``n`` pixels at half-tile strides, the last flush with the end."""
    if n <= tile:
        return [0]
    stride = tile // 2
    starts = list(range(0, n - tile + 1, stride))
    if starts[-1] != n - tile:
        starts.append(n - tile)
    return starts


def blend_window(tile: int) -> np.ndarray:
    """(tile, tile) weights: squared sine, largest in the middle, small but positive at the border."""
    w = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    return np.outer(w, w)


def generate_layout(gen: LayoutGenerator, fields: np.ndarray, key: jax.Array,
                    given: np.ndarray | None = None, batch_size: int = 16) -> np.ndarray:
    """A blended layout in [-1, 1], (H, W, len(output_channels)).

    Parameters
    ----------
    fields
        (H, W, P) requested parameter values in their units, NaN where free.
    key
        Randomness of this sample (pix2pix dropout, VAE latents), split per tile batch.
    given
        (H, W, len(input_channels)) uint8 0/1 layout channels the checkpoint
        conditions on (a fixed street network), if it does.
    """
    h, w = fields.shape[:2]
    t = gen.tile_px
    ph, pw = max(h, t), max(w, t)
    z = gen.scaler.transform(fields)
    if (ph, pw) != (h, w):  # a layout smaller than a tile: generate one tile and crop
        z = np.pad(z, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        given = None if given is None else np.pad(given, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    windows = [(r, c) for r in tile_offsets(ph, t) for c in tile_offsets(pw, t)]
    weight = blend_window(t)
    total = np.zeros((ph, pw, len(gen.output_channels)))
    norm = np.zeros((ph, pw, 1))
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        maps = np.stack([z[r:r + t, c:c + t] for r, c in chunk])
        chunk_key = jax.random.fold_in(key, start)
        if gen.kind == "pix2pix":
            cond = maps
            if gen.input_channels:
                tiles = np.stack([given[r:r + t, c:c + t] for r, c in chunk])
                cond = np.concatenate([maps, np.asarray(layout_to_signed(jnp.asarray(tiles)))], axis=-1)
            out = np.asarray(gen.task.jit("generate")(gen.state, jnp.asarray(cond, jnp.float32), chunk_key))
        else:  # one latent from the prior per tile, conditioned on the tile's mean parameters
            params = jnp.asarray(maps.mean(axis=(1, 2)), jnp.float32)
            out = np.asarray(gen.task.jit("sample", static_argnums=2)(gen.state, params, 1, chunk_key)) * 2.0 - 1.0
        for (r, c), tile in zip(chunk, out):
            total[r:r + t, c:c + t] += tile * weight[..., None]
            norm[r:r + t, c:c + t] += weight[..., None]
    return (total / norm)[:h, :w].astype(np.float32)


def correlated_bernoulli(probs: np.ndarray, rng: np.random.Generator, sigma_px: float = 1.5) -> np.ndarray:
    """Draw a 0/1 layout whose pixels are Bernoulli(``probs``) but whose noise is spatially smooth.

    A VAE decodes per-pixel probabilities, blurry after little training:
    thresholding them at 0.5 (the per-pixel mode) loses everything below
    it, and independent draws give speckle. Comparing ``probs`` with a
    Gaussian-smoothed noise field mapped to Uniform(0, 1) keeps every
    pixel's marginal probability exactly, so the expected coverage is the
    decoded one, while neighbouring pixels share their noise and form shapes.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.special import ndtr

    noise = rng.standard_normal(probs.shape)
    smooth = gaussian_filter(noise, sigma=(sigma_px, sigma_px, 0), mode="wrap")
    smooth /= smooth.std(axis=(0, 1), keepdims=True) + 1e-12
    return (ndtr(smooth) < probs).astype(np.uint8)
