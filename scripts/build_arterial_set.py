"""Cut the arterial stage's training windows from the generator's training tiles.

Run from the repository root, on the dataset the generator was trained on::

    python scripts/build_arterial_set.py --dataset data/offline_city_set --out data/offline_arterials

Windows of 4 x 4 side-by-side training tiles of ``city-64``'s split (1 km at
4 m/px), at every tile offset, have their major roads max-pooled to 16 m/px
(64 px): :func:`data_pipeline.coarsen.coarsen_dataset`. No validation, test or
buffer tile lies under any window, so the arterial stage never sees the ground
the bar is measured on.
"""

from __future__ import annotations

import argparse

from data_pipeline.coarsen import coarsen_dataset
from data_pipeline.dataset import open_dataset
from urbangen.evaluate import run_split
from urbangen.pretrained import load_one_model

FACTOR = 4
WINDOW_TILES = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="the dataset the generator was trained on")
    parser.add_argument("--model", default="city_streets_64.msgpack",
                        help="a model of the generator (shipped file name, model file or run) whose split to use")
    parser.add_argument("--out", required=True, help="the coarse dataset to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is a dataset")
    args = parser.parse_args()
    source = open_dataset(args.dataset)
    model = load_one_model(args.model, "generator")
    train = run_split(model.spec, source).indices("train")
    out = coarsen_dataset(source, args.out, tile_indices=train, factor=FACTOR, window_tiles=WINDOW_TILES,
                          channels=("major_roads",), overwrite=args.overwrite,
                          provenance={"split_of": model.spec.workdir, "tiles": "train"})
    print(f"wrote {out}: {len(open_dataset(out))} windows of 1 km at 16 m/px")


if __name__ == "__main__":
    main()
