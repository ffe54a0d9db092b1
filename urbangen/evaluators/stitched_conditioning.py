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
failures (:func:`urbangen.evaluators.conditioning.errors`). The floor: the
real tiles of the same mosaics through the same path.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from data_pipeline.dataset import TileDataset
from data_pipeline.errors import InvalidValueError
from data_pipeline.parameters import PARAMETERS
from urbangen.evaluators.common import read_real
from urbangen.evaluators.conditioning import errors
from urbangen.evaluators.seams import mosaic_of
from urbangen.generate.sampler import generate_layout, to_layout
from urbangen.inference import Generator
from urbangen.measure import PARAMETER_CHANNELS


class StitchedConditioning:
    """Each real mosaic's tile parameters requested as one spatial field; the stitched layout measured per tile.

    Parameters
    ----------
    dataset
        The dataset the mosaics' tiles come from.
    blocks
        Row positions of each mosaic's tiles, (side, side) as they lie in an
        image (:func:`urbangen.evaluators.seams.mosaic_rows`).
    parameter_names
        The generator's parameters, in its order.
    """

    def __init__(self, dataset: TileDataset, blocks: list[np.ndarray], parameter_names: tuple[str, ...]) -> None:
        if not blocks:
            raise InvalidValueError("no real mosaic of whole tiles side by side: stitched conditioning needs one")
        self.blocks = [np.asarray(b, np.int64) for b in blocks]
        self.real = read_real(dataset, np.concatenate([b.ravel() for b in self.blocks]), parameter_names)
        position = {int(r): k for k, r in enumerate(self.real.indices)}
        #: Each block's tiles as positions in ``self.real`` (its rows are sorted).
        self.positions = [np.vectorize(position.__getitem__, otypes=[np.int64])(b) for b in self.blocks]

    def fields(self, b: int) -> np.ndarray:
        """Block ``b``'s request: (side * t, side * t, P), each tile's parameters over its own pixels."""
        t = self.real.tiles.shape[1]
        params = self.real.parameters[self.positions[b]]  # (side, side, P)
        return np.repeat(np.repeat(params, t, axis=0), t, axis=1)

    def run(self, model: Generator, seed: int = 0) -> dict[str, Any]:
        """One stitched layout per mosaic; per parameter, each tile window's measure against its request."""
        spec = model.spec
        if spec.input_channels:
            raise InvalidValueError("the generator draws around given channels: it has no stitched layout of its own")
        t = self.real.tiles.shape[1]
        channels = list(self.real.channels)
        generated = np.zeros_like(self.real.tiles)
        layouts = []
        for b, pos in enumerate(self.positions):
            side = pos.shape[0]
            probs = generate_layout(model, self.fields(b), jax.random.fold_in(jax.random.key(seed), b))
            layout = to_layout(probs, spec, np.random.default_rng([seed, b]))
            full = np.zeros((side * t, side * t, len(channels)), np.uint8)
            for j, c in enumerate(spec.output_channels):
                full[..., channels.index(c)] = layout[..., j]
            layouts.append(full)
            windows = full.reshape(side, t, side, t, -1).swapaxes(1, 2)  # (side, side, t, t, C)
            generated[pos.ravel()] = windows.reshape(side * side, t, t, -1)
        measured = self.real.measure(generated)
        names = list(spec.parameter_names)
        requested = self.real.parameters
        achieved = {"generated": measured[names].to_numpy(np.float64),
                    "floor": self.real.measured[names].to_numpy(np.float64)}
        drawn = [p for p in names if _drawn(p, spec.output_channels)]
        per_parameter: dict[str, Any] = {}
        for j, name in enumerate(names):
            known = np.isfinite(requested[:, j])
            per_parameter[name] = {"unit": PARAMETERS[name][0], "drawn": name in drawn,
                                   "requested_mean": float(requested[known, j].mean()) if known.any() else None,
                                   **{side: errors(requested[:, j], v[:, j]) for side, v in achieved.items()}}
        total_known = sum(per_parameter[p]["generated"]["n"] for p in drawn)
        total_failed = sum(per_parameter[p]["generated"]["failures"] for p in drawn)
        return {"mosaics": len(self.blocks), "mosaic_tiles": [list(p.shape) for p in self.positions],
                "tiles": int(len(self.real)), "layout_px": [int(p.shape[0] * t) for p in self.positions],
                "parameters": per_parameter, "conditioned": drawn,
                "failure_rate": float(total_failed / total_known) if total_known else None,
                "requested": requested.tolist(), "achieved": achieved["generated"].tolist(),
                "achieved_floor": achieved["floor"].tolist(),
                "layouts": layouts, "real_mosaics": [mosaic_of(self.real.tiles[p]) for p in self.positions]}


def _drawn(parameter: str, output_channels: tuple[str, ...]) -> bool:
    return bool(set(PARAMETER_CHANNELS[parameter]) & set(output_channels))
