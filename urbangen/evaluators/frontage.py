"""The building–street interface: whether buildings front the streets, as in a town.

Alexander's building–street interface: a town's buildings face its streets,
each close to one, at a setback its kind of district keeps (a perimeter
block's wall on the pavement, a suburban house behind its front yard). A
generator can match coverage and footprint counts with buildings scattered
through block interiors, or laid on the streets themselves; the per-tile
parameters do not see it, and this does.

Distances run from pixel centre to the nearest street pixel (any street
channel). Two per-tile statistics:

- ``street_enrichment``: the share of building pixels within ``NEAR_M`` of
  a street, over the share of all land (pixels that are not street) within
  it. Buildings placed without regard to the streets score about 1; real
  tiles score below it (the offline city set's validation, training and
  test tiles: 0.56, 0.59 and 0.79 on average), since buildings keep off the
  carriageway, the pavement and the front yard; buildings laid on the
  streets score above 1.
- ``setback_m``: the median over building footprints (4-connected pieces of
  the building channel, as :func:`urbangen.vectorize.polygons` reads them)
  of the distance from a footprint's nearest pixel to the nearest street:
  how far back a district's buildings stand.

Tiles without a building or a street have neither. Each statistic is compared
with the real test tiles' beside the floor by :func:`urbangen.evaluators.per_tile.compare`.
A street just outside a tile is not seen from inside it, for real and
generated tiles alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators.common import FloorPool, RealTiles
from urbangen.evaluators.per_tile import compare
from urbangen.measure import STREET_CHANNELS

#: The band along a street whose share of buildings ``street_enrichment`` compares with its share of land:
#: three pixels at 4 m/px, a carriageway's half, a pavement and a front yard.
NEAR_M = 12.0
STATISTICS = ("street_enrichment", "setback_m")
#: Footprints: 4-connected, as the vectorized outputs read the building channel.
_FOUR = ndimage.generate_binary_structure(2, 1)


def _street_distance(tile: np.ndarray, channels: list[str], meters_per_pixel: float) -> np.ndarray | None:
    """(H, W) distance (m) from each pixel to the nearest street pixel (0 on streets); None without streets."""
    street_idx = [channels.index(c) for c in STREET_CHANNELS if c in channels]
    if "buildings" not in channels or not street_idx:
        raise InvalidValueError(f"the building–street interface needs a buildings channel and a street channel; "
                                f"got {channels}")
    streets = tile[..., street_idx].any(axis=-1)
    if not streets.any():
        return None
    return ndimage.distance_transform_edt(~streets) * meters_per_pixel


def footprint_distances(tile: np.ndarray, channels: list[str], meters_per_pixel: float) -> np.ndarray:
    """Per building footprint of one tile, the distance from its nearest pixel to the nearest street pixel.

    Parameters
    ----------
    tile
        (H, W, len(channels)) 0/1 layout.
    channels
        Its channel names: ``buildings`` and at least one street channel.
    meters_per_pixel
        The tile's scale.

    Returns
    -------
    numpy.ndarray
        Distances in metres, one per 4-connected footprint (empty without a building or a street).

    Raises
    ------
    InvalidValueError
        If ``channels`` lack the buildings channel or every street channel.
    """
    distance = _street_distance(tile, channels, meters_per_pixel)
    if distance is None:
        return np.zeros(0)
    return _footprint_minimum(distance, tile[..., channels.index("buildings")].astype(bool))


def _footprint_minimum(distance: np.ndarray, buildings: np.ndarray) -> np.ndarray:
    """Per 4-connected footprint of ``buildings`` (H, W), the least of ``distance`` over its pixels."""
    labels, n = ndimage.label(buildings, structure=_FOUR)
    return np.asarray(ndimage.minimum(distance, labels, index=np.arange(1, n + 1)), dtype=np.float64)


def interface_statistics(tiles: np.ndarray, channels: list[str], meters_per_pixel: float) -> np.ndarray:
    """Per tile, ``street_enrichment`` and ``setback_m`` (see the module).

    Returns
    -------
    numpy.ndarray
        (len(tiles), 2), NaN for a tile without a building or a street.

    Raises
    ------
    InvalidValueError
        If ``channels`` lack the buildings channel or every street channel.
    """
    out = np.full((len(tiles), len(STATISTICS)), np.nan)
    for i, tile in enumerate(tiles):
        distance = _street_distance(tile, channels, meters_per_pixel)
        buildings = tile[..., channels.index("buildings")].astype(bool)
        if distance is None or not buildings.any():
            continue
        footprints = _footprint_minimum(distance, buildings)
        # Street pixels are at distance 0, so a building laid over a street counts as near it (above 1).
        near, land = distance <= NEAR_M, distance > 0
        out[i] = (np.mean(near[buildings]) / np.mean(near[land]), np.median(footprints))
    return out


class BuildingStreetInterface:
    """How generated buildings front their streets, against real test tiles, beside real against real."""

    def __init__(self, reference: RealTiles) -> None:
        self.reference = reference

    def run(self, generated: np.ndarray, real: RealTiles, seed: int = 0, tolerance: float = 2.0,
            pool: FloorPool | None = None) -> dict[str, Any]:
        """``real``: as many real tiles from other ground (training regions), the floor; ``tolerance``: the
        target, in floors, for each statistic's W1; ``pool``: the tiles ``real`` was drawn from (see
        :func:`urbangen.evaluators.per_tile.compare`)."""
        channels, mpp = list(self.reference.channels), self.reference.meters_per_pixel
        statistics = compare(lambda tiles: interface_statistics(tiles, channels, mpp), STATISTICS, self.reference,
                             generated, real, seed=seed, tolerance=tolerance, pool=pool)
        return {"n": int(len(generated)), "near_m": NEAR_M, "statistics": statistics}
