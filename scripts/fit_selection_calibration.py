"""Fit what real tiles measure through the raster path, for a generator's sampling by selection.

Run from the repository root, on the dataset the generator was trained on::

    URBANGEN_OSM_DIR=../shared/osm urbangen data build \\
        --config urbangen/resources/cities/offline_city_set.yaml --out data/offline_city_set
    python scripts/fit_selection_calibration.py --model city-64 --dataset data/offline_city_set \\
        --out urbangen/data/models/city_64_calibration.json

Every training tile of the generator's split (building parameters: those whose
buildings were mapped) is measured through :func:`urbangen.measure.measure_tiles`
and each parameter's measured values are fitted against the tile's own
parameters, those of the stage that draws it
(:func:`urbangen.generate.selection.fit_calibration`). Test and validation tiles
are never read.
"""

from __future__ import annotations

import argparse

import numpy as np

from data_pipeline.dataset import open_dataset
from urbangen.evaluate import run_split
from urbangen.evaluators.common import read_real
from urbangen.generate.selection import fit_calibration
from urbangen.inference import GeneratorChain
from urbangen.measure import PARAMETER_CHANNELS
from urbangen.pretrained import load_model

BUILDING_CHANNELS = ("buildings", "open_space", "water")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="city-64", help="the generator (shipped name, model file or run)")
    parser.add_argument("--dataset", required=True, help="the dataset it was trained on")
    parser.add_argument("--out", required=True, help="the calibration file to write (JSON)")
    args = parser.parse_args()
    model = load_model(args.model)
    data = open_dataset(args.dataset)
    split = run_split(model.spec, data)
    names = list(model.spec.parameter_names)
    real = read_real(data, split.train, tuple(names))
    measured = real.measured[names].to_numpy(np.float64)
    requested = real.parameters.copy()
    # Building, open-space and water parameters only where the source mapped buildings.
    unmapped = ~data.tiles["buildings_known"].to_numpy(bool)[real.indices]
    for j, name in enumerate(names):
        if set(PARAMETER_CHANNELS[name]) <= set(BUILDING_CHANNELS):
            requested[unmapped, j] = np.nan
    # Each parameter against every parameter of the stage that draws it: the request as the stage sees it.
    # (Stages at a coarser scale, the arterial stage, are drawn once and never chosen by selection.)
    stages = model.tile_stages if isinstance(model, GeneratorChain) else (model,)
    predictors = {p: list(s.spec.parameter_names) for s in stages for p in s.spec.parameter_names}
    calibration = fit_calibration(requested, measured, names, scaler=model.spec.scaler, predictors=predictors,
                                  tile_px=data.tile_px,
                                  meters_per_pixel=float(data.meters_per_pixel),
                                  fitted_on=f"{len(real)} training tiles of {args.dataset} (split seed {split.seed})")
    calibration.write(args.out)
    for name, line in calibration.lines.items():
        print(f"{name:34s} spread {line.spread:8.3f}, R² {line.r2:.2f}, n {line.n}")


if __name__ == "__main__":
    main()
