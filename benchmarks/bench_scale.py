"""Benchmark: a many-city build serially and on a Dask LocalCluster, with the same output.

Builds every shared extract (``offline_city_set.yaml``: 14 cities, 4 m/px, 64 px
tiles) twice, each in a fresh process timed from before the pipeline's imports,
as ``urbangen data build`` runs: one city after another, and on a ``LocalCluster``
of 2 single-threaded worker processes (cluster start-up and shut-down included).
Prints the speed-up, the peak memory of each worker against the serial build's,
and checks that the two datasets are equal (rasters byte for byte,
``tiles.parquet`` equal). Target: at least 1.7x on a 2-core machine.

Then builds the largest extract (Lyngby) whole and in blocks of at most
2 x 2 km (``--block-km``), each in a fresh process after a small warm-up build,
in ``--rounds`` rounds (3; a single pair's overhead ranged from +23 % to +48 % within
an hour on one commit), and prints the peak memory of the blocked build's largest task against the
whole build's, and the time overhead of blocking (one process both), each the median over the rounds. It also
times the blocked build on the worker cluster, where its blocks run side by side. Targets: peak memory below
half, at most 20 % overhead. Needs ``URBANGEN_OSM_DIR``.

    python benchmarks/bench_scale.py [--workers 2] [--block-km 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("URBANGEN_NO_PROGRESS", "1")

# Nothing heavy here: the many-city builds run in processes that time their own imports, as a command's are.

TARGET_SPEEDUP = 1.7
LARGEST = "copenhagen_lyngby/lyngby_osm_bbox.osm.xml.gz"
WARM_UP = "austin/austin_ut_campus_osm_bbox.osm.xml.gz"


def _timed_build(out: str, block_km: float | None, tiling, scheduler: str = "serial") -> dict:
    """A warm-up build (imports, caches), then the largest extract, timed; run in a spawned process (or, with a
    cluster's ``scheduler`` address, here: its tasks run on the cluster's workers)."""
    from data_pipeline.build import CitySpec, build_dataset
    from data_pipeline.city import current_rss_mb
    from urbangen.settings import osm_file

    build_dataset([CitySpec("warm_up", osm_file=str(osm_file(WARM_UP)))], Path(out) / "warm_up", tiling,
                  block_km=block_km, scheduler=scheduler)
    results = []
    base = current_rss_mb()
    start = time.perf_counter()
    build_dataset([CitySpec("lyngby", osm_file=str(osm_file(LARGEST)))], Path(out) / "lyngby", tiling,
                  block_km=block_km, scheduler=scheduler, results=results)
    return {"seconds": time.perf_counter() - start, "process_rss_before_mb": base,
            "peak_rss_mb": results[0].peak_rss_mb, "own_peak_mb": results[0].own_peak_mb,
            "tasks": results[0].n_tasks, "task_own_peaks_mb": list(results[0].task_own_peaks_mb)}


def _timed_many(config: str, out: str, scheduler: str, workers: int) -> tuple:
    """Every city of ``config`` built into ``out``, run in a spawned process and timed from before the
    pipeline's imports, as ``urbangen data build --config`` runs (which starts a local cluster's fork server
    first, so that its imports run beside its own): seconds, cores busy on average (libosmium and zarr have
    threads of their own), this process's peak memory, and each city's result."""
    start, cpu = time.perf_counter(), os.times()
    if scheduler == "local":
        from data_pipeline.workers import start_fork_server

        start_fork_server()
    from benchmarks._common import peak_rss_mb
    from data_pipeline.build import build_dataset, read_build_file
    from urbangen.examples import resolve

    build_file = read_build_file(resolve(config, "cities"))
    results = []
    build_dataset(build_file.cities, Path(out), build_file.tiling, scheduler=scheduler, workers=workers,
                  results=results)
    seconds = time.perf_counter() - start
    return seconds, (sum(os.times()[:2]) - sum(cpu[:2])) / seconds, peak_rss_mb(), results


def blocked_build(tiling, block_km: float, workers: int, rounds: int) -> dict:
    """Lyngby whole and in blocks, each in its own fresh process, ``rounds`` times (whole first in odd rounds,
    blocked first in even ones, so that a drift in the machine's speed falls on both), and in blocks on
    ``workers`` Dask workers; the outputs of the first round compared."""
    import pandas as pd
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        runs: dict = {"rounds": []}
        for k in range(rounds):
            done = {}
            for name, blocks in (("whole", None), ("blocked", block_km))[::1 if k % 2 == 0 else -1]:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    done[name] = pool.submit(_timed_build, str(Path(tmp) / f"{name}-{k}"), blocks, tiling).result()
            runs["rounds"].append(done)
        # The same blocks on a running cluster (started, and warmed up, before the clock starts): blocks are
        # tasks, so a blocked city also spreads over the workers.
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
            runs["blocked_on_workers"] = _timed_build(str(Path(tmp) / "blocked_on_workers"), block_km,
                                                                 tiling, cluster.scheduler_address)["seconds"]
        whole, blocked = (Path(tmp) / f"{n}-0" / "lyngby" for n in ("whole", "blocked"))
        runs["rasters_equal"] = _same_bytes(whole / "rasters", blocked / "rasters")
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(whole / "tiles.parquet"),
                                          pd.read_parquet(blocked / "tiles.parquet"), check_exact=True)
            runs["tables_equal"] = True
        except AssertionError:
            runs["tables_equal"] = False
    return runs


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
    parser.add_argument("--block-km", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="whole and blocked builds of the largest extract, each round (their medians count)")
    args = parser.parse_args()
    import numpy as np
    import pandas as pd

    from benchmarks._common import write_results
    from data_pipeline.build import read_build_file
    from urbangen.examples import resolve

    build_file = read_build_file(resolve(args.config, "cities"))
    cities, tiling = build_file.cities, build_file.tiling

    with tempfile.TemporaryDirectory() as tmp:
        # Each build in a fresh process: a local cluster's workers are forked from the process that starts
        # them, and would inherit what a build before them warmed up there (caches, the projection database).
        runs = {}
        for name, scheduler in (("serial", "serial"), ("dask", "local")):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                runs[name] = pool.submit(_timed_many, args.config, str(Path(tmp) / name), scheduler,
                                         args.workers).result()
        serial_s, serial_cores, serial_peak, serial_results = runs["serial"]
        dask_s, _, _, dask_results = runs["dask"]
        serial, dask = (Path(tmp) / name for name in ("serial", "dask"))
        rasters_equal = _same_bytes(serial / "rasters", dask / "rasters")
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(serial / "tiles.parquet"),
                                          pd.read_parquet(dask / "tiles.parquet"), check_exact=True)
            tables_equal = True
        except AssertionError:
            tables_equal = False
        n_tiles = len(pd.read_parquet(serial / "tiles.parquet", columns=["city"]))

    per_worker = defaultdict(float)
    for r in dask_results:
        per_worker[r.host] = max(per_worker[r.host], r.peak_rss_mb)
    longest = max(serial_results, key=lambda r: r.seconds)
    speedup = serial_s / dask_s
    print(f"{len(cities)} cities, {n_tiles} tiles ({tiling.tile_px} px at {tiling.meters_per_pixel} m/px)")
    print(f"serial build           {serial_s:7.1f} s   peak memory {serial_peak:6.0f} MiB (this process), "
          f"{serial_cores:.2f} cores busy on average")
    print(f"LocalCluster {args.workers} x 1 thr  {dask_s:7.1f} s   peak memory per worker "
          + ", ".join(f"{v:.0f}" for v in sorted(per_worker.values())) + " MiB")
    print(f"speed-up {speedup:.2f}x (target >= {TARGET_SPEEDUP}x); longest city {longest.city} "
          f"{longest.seconds:.1f} s of {sum(r.seconds for r in serial_results):.1f} s of city work")
    print(f"outputs equal: rasters byte for byte {rasters_equal}, tiles.parquet {tables_equal}")
    path = write_results("bench_scale", {
        "cities": len(cities), "tiles": n_tiles, "workers": args.workers,
        "serial_s": round(serial_s, 2), "dask_s": round(dask_s, 2), "speedup": round(speedup, 3),
        "serial_cores_busy": round(serial_cores, 2),
        "target_speedup": TARGET_SPEEDUP,
        "serial_peak_rss_mb": round(serial_peak, 1),
        "worker_peak_rss_mb": sorted(round(v, 1) for v in per_worker.values()),
        "city_seconds_serial": {r.city: round(r.seconds, 2) for r in serial_results},
        "city_seconds_dask": {r.city: round(r.seconds, 2) for r in dask_results},
        "city_worker_dask": {r.city: r.host for r in dask_results},
        "rasters_equal": rasters_equal, "tables_equal": tables_equal,
    })
    blocks = blocked_build(tiling, args.block_km, args.workers, args.rounds)
    overheads, memory = [], []
    for k, r in enumerate(blocks["rounds"]):
        whole, blocked = r["whole"], r["blocked"]
        overheads.append(blocked["seconds"] / whole["seconds"] - 1.0)
        memory.append(blocked["own_peak_mb"] / whole["own_peak_mb"])
        peaks = blocked["task_own_peaks_mb"]
        print(f"round {k + 1}: Lyngby whole {whole['seconds']:5.1f} s, {whole['own_peak_mb']:4.0f} MiB above the "
              f"process (peak {whole['peak_rss_mb']:4.0f}); in blocks {blocked['seconds']:5.1f} s, "
              f"{blocked['own_peak_mb']:4.0f} MiB above (peak {blocked['peak_rss_mb']:4.0f}) over {blocked['tasks']} "
              f"tasks (plan, blocks, join), above the process per task: plan {peaks[0]:.0f}, blocks "
              f"{min(peaks[1:]):.0f} to {max(peaks[1:]):.0f}; overhead {overheads[-1]:+.0%}, memory {memory[-1]:.0%}")
    overhead, memory_share = float(np.median(overheads)), float(np.median(memory))
    whole_s = float(np.median([r["whole"]["seconds"] for r in blocks["rounds"]]))
    print(f"Lyngby in blocks on {args.workers} workers {blocks['blocked_on_workers']:6.1f} s "
          f"({blocks['blocked_on_workers'] / whole_s - 1.0:+.0%} against the whole build in one process, median)")
    print(f"blocking, median of {len(overheads)} rounds: time overhead {overhead:+.0%} (target <= +20 %); peak memory "
          f"{memory_share:.0%} of the whole build's above the process (target < 50 %); "
          f"outputs equal: rasters {blocks['rasters_equal']}, tiles.parquet {blocks['tables_equal']}")
    path = write_results("bench_scale", {**json.loads(path.read_text()), "blocked_largest": {
        **blocks, "block_km": args.block_km, "time_overheads": [round(v, 3) for v in overheads],
        "memory_shares": [round(v, 3) for v in memory], "time_overhead": round(overhead, 3),
        "memory_share": round(memory_share, 3)}})
    print(f"wrote {path}")
    if not (rasters_equal and tables_equal and blocks["rasters_equal"] and blocks["tables_equal"]):
        sys.exit("a Dask or blocked build differs from the serial whole build")


if __name__ == "__main__":
    main()
