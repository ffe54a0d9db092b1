"""From dataset tiles and parameters to model inputs and targets, and back.

Layouts enter the models as float maps in [-1, 1] (pix2pix's tanh range);
urban-form parameters as standardized vectors, or broadcast to maps for the
pix2pix generator. The scaler is fitted on the training split only and
travels with every checkpoint, so generation standardizes requests exactly
as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jax.numpy as jnp
import numpy as np

from data_pipeline.errors import InvalidValueError


@dataclass(frozen=True)
class ParameterScaler:
    """Standardizes urban-form parameter vectors.

    Unknown values (NaN: a layer missing from the source) become 0, the
    training mean, so they neither inform nor mislead the model.
    """

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, names: Sequence[str], values: np.ndarray) -> ParameterScaler:
        """Fit to ``values`` (n_tiles, n_parameters), ignoring NaN."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise InvalidValueError(f"expected ({len(values)}, {len(names)}) parameter values, got {values.shape}")
        finite = np.isfinite(values)
        count = finite.sum(axis=0)
        filled = np.where(finite, values, 0.0)
        mean = filled.sum(axis=0) / np.maximum(count, 1)
        var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
        std = np.where(var > 1e-16, np.sqrt(var), 1.0)
        return cls(tuple(names), tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def transform(self, values: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Standardized values (float32, what models take, unless ``dtype`` says otherwise), NaN replaced by 0."""
        z = (np.asarray(values, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(dtype)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Parameter values in their own units."""
        return np.asarray(z, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ParameterScaler:
        return cls(tuple(d["names"]), tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


def channel_indices(all_channels: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of ``wanted`` channels in the dataset's channel order, with a clear error."""
    unknown = [c for c in wanted if c not in all_channels]
    if unknown:
        raise InvalidValueError(f"channels {unknown} are not in the dataset; it has {list(all_channels)}")
    return [list(all_channels).index(c) for c in wanted]


def layout_to_signed(tiles: jnp.ndarray) -> jnp.ndarray:
    """uint8 0/1 tiles to float32 in {-1, 1}."""
    return tiles.astype(jnp.float32) * 2.0 - 1.0


def parameter_maps(z: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Broadcast standardized vectors (B, P) to constant maps (B, H, W, P)."""
    return jnp.broadcast_to(z[:, None, None, :], (z.shape[0], height, width, z.shape[-1]))
