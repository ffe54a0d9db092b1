"""Conditioning over stitched layouts: do parameters asked for as spatial fields hold across a layout?

A layout larger than a tile is drawn in overlapping windows and blended
(:mod:`urbangen.generate.sampler`): neighbours add their streets under a
window, junctions and gaps are joined, and a chain's arterial stage draws
across windows. What each window asked for is then not necessarily what the
layout measures there, and single tiles (:mod:`urbangen.evaluators.conditioning`)
cannot show it.

A real test mosaic of whole tiles side by side gives the request: each tile's
own parameters over its ground, a spatial field that varies as real land
does. The layout generated for that field is cut back into the tiles'
windows, each measured through the same raster → vector → parameters path as
the real tile (:func:`urbangen.measure.measure_tiles`) and compared with that
tile's request, per parameter as in the single-tile evaluator: MAE, R² and
failures (:func:`urbangen.evaluators.conditioning.errors`), each MAE with a 95 % interval whose
independent units are the mosaics (a mosaic's windows are not independent draws). The floor: the
real tiles of the same mosaics through the same path.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from data_pipeline.dataset import TileDataset
from data_pipeline.errors import InvalidValueError
from urbangen import progress
from urbangen.evaluators.common import generate_for, read_real, stitched_layout
from urbangen.evaluators.conditioning import drawn_parameters, failure_rate, parameter_errors
from urbangen.evaluators.seams import mosaic_of, tiles_of
from urbangen.inference import Generator


class StitchedConditioning:
    """Each real mosaic's tile parameters requested as one spatial field; the stitched layout measured per tile.

    Parameters
    ----------
    dataset
        The dataset the mosaics' tiles come from.
    blocks
        Row positions of each mosaic's tiles, (side, side) as they lie in an
        image (:func:`urbangen.evaluators.seams.mosaic_rows`); no tile in two.
    parameter_names
        The generator's parameters, in its order.

    Raises
    ------
    InvalidValueError
        If there is no block, or a tile is in more than one.
    """

    def __init__(self, dataset: TileDataset, blocks: list[np.ndarray], parameter_names: tuple[str, ...]) -> None:
        if not blocks:
            raise InvalidValueError("no real mosaic of whole tiles side by side: stitched conditioning needs one")
        rows = np.concatenate([np.ravel(b) for b in blocks])
        if len(np.unique(rows)) != len(rows):
            raise InvalidValueError("a tile is in more than one mosaic: each window would be scored twice")
        self.real = read_real(dataset, rows, parameter_names)
        #: Each block's tiles as positions in ``self.real``, whose rows are sorted.
        self.positions = [np.searchsorted(self.real.indices, np.asarray(b, np.int64)) for b in blocks]

    def fields(self, b: int) -> np.ndarray:
        """Block ``b``'s request: (side * t, side * t, P), each tile's parameters over its own pixels."""
        t = self.real.tiles.shape[1]
        params = self.real.parameters[self.positions[b]]  # (side, side, P)
        return np.repeat(np.repeat(params, t, axis=0), t, axis=1)

    def run(self, model: Generator, seed: int = 0) -> dict[str, Any]:
        """One stitched layout per mosaic; per parameter, each tile window's measure against its request, beside
        the floor (the real tiles) and ``single_tiles`` (the same tiles generated one by one, as the
        single-tile evaluator does). The result's ``layouts`` and ``real_mosaics`` are arrays: the caller takes
        them out before writing it as JSON."""
        spec = model.spec
        if spec.input_channels:
            raise InvalidValueError("the generator draws around given channels: it has no stitched layout of its own")
        channels = list(self.real.channels)
        generated = np.zeros_like(self.real.tiles)
        layouts = []
        for b, pos in enumerate(self.positions):
            layout = stitched_layout(model, self.fields(b), jax.random.fold_in(jax.random.key(seed), b),
                                     np.random.default_rng([seed, b]), channels)
            layouts.append(layout)
            generated[pos.ravel()] = tiles_of(layout, pos.shape[0])
            progress.report("stitched layouts of real mosaics' fields", b + 1, len(self.positions))
        names = list(spec.parameter_names)
        achieved = {side: frame[names].to_numpy(np.float64) for side, frame in
                    (("generated", self.real.measure(generated)), ("floor", self.real.measured),
                     ("single_tiles", self.real.measure(generate_for(model, self.real, seed=seed))))}
        _, drawn = drawn_parameters(spec)
        mosaic = np.empty(len(self.real), np.int64)  # each window's mosaic: the units of its MAE intervals
        for b, pos in enumerate(self.positions):
            mosaic[pos.ravel()] = b
        per_parameter = parameter_errors(names, self.real.parameters, achieved, mosaic)
        for name, entry in per_parameter.items():
            entry["drawn"] = name in drawn
        return {"mosaics": len(self.positions), "mosaic_tiles": [list(p.shape) for p in self.positions],
                "tiles": int(len(self.real)), "layout_px": [int(p.shape[0] * self.real.tiles.shape[1])
                                                            for p in self.positions],
                "parameters": per_parameter, "conditioned": drawn, "failure_rate": failure_rate(per_parameter, drawn),
                "requested": self.real.parameters.tolist(), "mosaic_of_window": mosaic.tolist(),
                "achieved": achieved["generated"].tolist(),
                "achieved_floor": achieved["floor"].tolist(),
                "achieved_single_tiles": achieved["single_tiles"].tolist(),
                "layouts": layouts, "real_mosaics": [mosaic_of(self.real.tiles[p]) for p in self.positions]}
