"""Benchmark: a many-city build serially and on a Dask LocalCluster, with the same output.

Builds every shared extract (``offline_city_set.yaml``: 14 cities, 4 m/px, 64 px
tiles) twice: in this process, one city after another, and on a ``LocalCluster``
of 2 single-threaded worker processes (cluster start-up included). Prints the
speed-up, the peak memory of each worker against the serial build's, and checks
that the two datasets are equal (rasters byte for byte, ``tiles.parquet`` equal).
Target: at least 1.7x on a 2-core machine. Needs ``URBANGEN_OSM_DIR``.

    python benchmarks/bench_scale.py [--workers 2]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("URBANGEN_NO_PROGRESS", "1")

import pandas as pd  # noqa: E402

from benchmarks._common import peak_rss_mb, write_results  # noqa: E402
from data_pipeline.build import build_dataset, load_build_config  # noqa: E402
from urbangen.examples import resolve  # noqa: E402

TARGET_SPEEDUP = 1.7


def _same_bytes(left: Path, right: Path) -> bool:
    compared = filecmp.dircmp(left, right)
    if compared.left_only or compared.right_only:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    return not mismatch and not errors and all(_same_bytes(left / d, right / d) for d in compared.common_dirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default="offline_city_set.yaml")
    args = parser.parse_args()
    cities, tiling, _ = load_build_config(resolve(args.config, "cities"))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        serial_results = []
        serial = build_dataset(cities, Path(tmp) / "serial", tiling, results=serial_results)
        serial_s = time.perf_counter() - start
        serial_peak = peak_rss_mb()

        start = time.perf_counter()
        dask_results = []
        dask = build_dataset(cities, Path(tmp) / "dask", tiling, scheduler="local", workers=args.workers,
                             results=dask_results)
        dask_s = time.perf_counter() - start

        rasters_equal = _same_bytes(serial.path / "rasters", dask.path / "rasters")
        try:
            pd.testing.assert_frame_equal(serial.tiles, dask.tiles)
            tables_equal = True
        except AssertionError:
            tables_equal = False

    per_worker = defaultdict(float)
    for r in dask_results:
        per_worker[r.host] = max(per_worker[r.host], r.peak_rss_mb)
    longest = max(serial_results, key=lambda r: r.seconds)
    speedup = serial_s / dask_s
    print(f"{len(cities)} cities, {len(serial)} tiles ({tiling.tile_px} px at {tiling.meters_per_pixel} m/px)")
    print(f"serial build           {serial_s:7.1f} s   peak memory {serial_peak:6.0f} MiB (this process)")
    print(f"LocalCluster {args.workers} x 1 thr  {dask_s:7.1f} s   peak memory per worker "
          + ", ".join(f"{v:.0f}" for v in sorted(per_worker.values())) + " MiB")
    print(f"speed-up {speedup:.2f}x (target >= {TARGET_SPEEDUP}x); longest city {longest.city} "
          f"{longest.seconds:.1f} s of {sum(r.seconds for r in serial_results):.1f} s of city work")
    print(f"outputs equal: rasters byte for byte {rasters_equal}, tiles.parquet {tables_equal}")
    path = write_results("bench_scale", {
        "cities": len(cities), "tiles": len(serial), "workers": args.workers,
        "serial_s": round(serial_s, 2), "dask_s": round(dask_s, 2), "speedup": round(speedup, 3),
        "target_speedup": TARGET_SPEEDUP,
        "serial_peak_rss_mb": round(serial_peak, 1),
        "worker_peak_rss_mb": sorted(round(v, 1) for v in per_worker.values()),
        "city_seconds_serial": {r.city: round(r.seconds, 2) for r in serial_results},
        "city_seconds_dask": {r.city: round(r.seconds, 2) for r in dask_results},
        "city_worker_dask": {r.city: r.host for r in dask_results},
        "rasters_equal": rasters_equal, "tables_equal": tables_equal,
    })
    print(f"wrote {path}")
    if not (rasters_equal and tables_equal):
        sys.exit("the Dask build differs from the serial build")


if __name__ == "__main__":
    main()
