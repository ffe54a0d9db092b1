"""``urbangen generate``: from a parameter file to layouts, GIS files and a report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import jax
import numpy as np
from rasterio.transform import from_origin

from data_pipeline.atomic import PartialDir, check_replaceable, is_empty_dir
from data_pipeline.dataset import ATTRIBUTION
from data_pipeline.errors import OutputExistsError, ParameterFileError
from data_pipeline.parameters import PARAMETERS
from urbangen import progress
from urbangen.footprints import footprints_of
from urbangen.generate.fields import parameter_fields
from urbangen.generate.imputation import impute_free
from urbangen.generate.request import GenerationRequest, read_request
from urbangen.generate.sampler import generate_layout, to_layout
from urbangen.generate.selection import Calibration, by_parameters, candidates_of, shipped_calibration
from urbangen.generate.writers import write_geotiff, write_png, write_report
from urbangen.inference import Generator, GeneratorChain, TrainedModel
from urbangen.measure import measure_windows, vectorize
from urbangen.pretrained import load_model
from urbangen.vectorize import street_graph

#: Written into every output folder of :func:`generate`: ``--overwrite`` replaces only folders that have it.
MARKER = ".urbangen-generate"


def measurement_windows(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (row, col, rows, cols) windows of one training tile each (the whole layout if smaller)."""
    if height < tile or width < tile:
        return [(0, 0, height, width)]
    return [(r, c, tile, tile) for r in range(0, height - tile + 1, tile) for c in range(0, width - tile + 1, tile)]


def measure(layout: np.ndarray, channels: list[str], request: GenerationRequest, mpp: float, tile: int,
            min_area: float) -> tuple[dict[str, Any], Any]:
    """Vectorize a 0/1 layout and measure its parameters per window (:mod:`urbangen.measure`)."""
    h, w = layout.shape[:2]
    x0, y0 = request.origin
    transform = from_origin(x0, y0 + h * mpp, mpp, mpp)
    vectors = vectorize(layout, channels, transform, request.crs, min_area)
    windows = measurement_windows(h, w, tile)
    bounds = np.array([[x0 + c * mpp, y0 + (h - r - rows) * mpp, x0 + (c + cols) * mpp, y0 + (h - r) * mpp]
                       for r, c, rows, cols in windows])
    return vectors, measure_windows(vectors, channels, bounds, mpp, tile, request.crs,
                                    layouts=np.array([[x0, y0, x0 + w * mpp, y0 + h * mpp]]))


def compare(fields: np.ndarray, names: list[str], achieved, windows, requested_names: list[str]) -> dict[str, Any]:
    """Requested (window mean of the field) against achieved values, per parameter."""
    out = {}
    for name in requested_names:
        i = names.index(name)
        req = np.array([np.nanmean(fields[r:r + rows, c:c + cols, i]) for r, c, rows, cols in windows])
        got = achieved[name].to_numpy(dtype=float)
        out[name] = {"unit": PARAMETERS[name][0], "requested_mean": float(np.mean(req)),
                     "achieved_mean": float(np.nanmean(got)) if np.isfinite(got).any() else None,
                     "mean_absolute_error": float(np.nanmean(np.abs(got - req))) if np.isfinite(got).any() else None,
                     # Windows whose value could not be measured (no streets for an orientation entropy):
                     # counted, since the error above is over the measured windows only.
                     "failed_windows": int((np.isfinite(req) & ~np.isfinite(got)).sum()),
                     "per_window": [{"requested": float(a), "achieved": float(b)} for a, b in zip(req, got)]}
    return out


def generate(params_file: str | Path | GenerationRequest, out_dir: str | Path, *, overwrite: bool = False,
             generator: TrainedModel | None = None) -> dict[str, Any]:
    """Run a parameter file; write every sample's outputs and the report to ``out_dir``.

    Everything is validated (file, checkpoint, parameter names, street
    network) before anything is written, and the outputs appear in
    ``out_dir`` only when complete.

    Raises
    ------
    ForeignDirectoryError
        If ``out_dir`` holds files that are not an earlier output of this
        function (no :data:`MARKER`); with or without ``overwrite`` they are left alone.
    FileExistsError
        If ``out_dir`` is an earlier output and ``overwrite`` is false.
    """
    request = params_file if isinstance(params_file, GenerationRequest) else read_request(params_file)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    gen = generator or load_model(request.model, request.checkpoint_step)
    if request.streets is not None and isinstance(gen, GeneratorChain):
        # A street network given: the stages that draw streets step aside for it.
        gen = gen.around_given()
    gen = by_parameters(gen, request.candidates, scatter=request.target_scatter)
    if isinstance(gen, GeneratorChain) and request.rectangular_footprints is not None:
        gen = replace(gen, rectangular_footprints=request.rectangular_footprints)
    elif request.rectangular_footprints:  # said, not left out: a single model would silently hand on its own
        raise ParameterFileError(request.source, "footprints", f"rectangles: only a chain of generators (a shipped "
                                 f"model) redraws footprints; {request.model_ref} is a single model, whose "
                                 "footprints are as drawn (say as_drawn, or leave footprints out)")
    spec = gen.spec
    if "generate" not in gen.predict:
        raise ParameterFileError(request.source, "model.checkpoint",
                                 f"{request.model_ref} holds a {spec.kind} run, which does not generate layouts")
    if request.model_type is not None and spec.kind != request.model_type:
        raise ParameterFileError(request.source, "model.type",
                                 f"is {request.model_type} but {request.model_ref} holds a {spec.kind} model")
    if spec.input_channels and request.streets is None:
        raise ParameterFileError(request.source, "streets", f"this checkpoint generates around given "
                                 f"{', '.join(spec.input_channels)}: add a street network (GeoJSON or GraphML)")
    if request.streets is not None and not spec.input_channels:
        raise ParameterFileError(request.source, "streets", "this checkpoint does not take a street network")
    mpp, tile, names = spec.meters_per_pixel, spec.tile_px, list(spec.parameter_names)
    width, height = (max(1, int(round(s / mpp))) for s in request.size_m)
    # Parameters the file leaves free: what real tiles with the requested ones have (urbangen.generate.imputation).
    calibration = shipped_calibration(gen)
    fields = impute_free(parameter_fields(request, names, height, width, mpp), names, spec.scaler, calibration)
    free = {n: float(np.mean(fields[..., i])) for i, n in enumerate(names)
            if n not in request.parameters and np.isfinite(fields[..., i]).all()}
    given = None
    if request.streets is not None:
        from urbangen.generate.streets import rasterize_streets

        given = rasterize_streets(request, list(spec.input_channels), height, width, mpp)
    channels = list(spec.input_channels + spec.output_channels)

    partial = PartialDir(out_dir)  # also clears partial folders of killed runs, never a running one's
    tmp = partial.path
    try:
        samples = []
        windows = measurement_windows(height, width, tile)
        for s in range(request.samples):
            progress.report("samples", s, request.samples)
            key = jax.random.fold_in(jax.random.key(request.seed), s)
            probs = generate_layout(gen, fields, key, given)
            layout = to_layout(probs, spec, np.random.default_rng([request.seed, s]))
            if given is not None:
                layout = np.concatenate([given, layout], axis=-1)
            vectors, achieved = measure(layout, channels, request, mpp, tile, request.min_building_area_m2)
            stem = tmp / f"sample_{s:03d}"
            x0, y0 = request.origin
            transform = from_origin(x0, y0 + height * mpp, mpp, mpp)
            if "png" in request.outputs:
                write_png(layout, channels, stem.with_suffix(".png"), mpp, title=f"sample {s} (seed {request.seed})")
            if "geotiff" in request.outputs:
                write_geotiff(layout, channels, stem.with_suffix(".tif"), transform, request.crs)
            if "geojson" in request.outputs:
                _write_geojson(vectors["buildings"], stem.parent / f"{stem.name}_buildings.geojson")
                _write_geojson(vectors["streets"], stem.parent / f"{stem.name}_streets.geojson")
            if "graphml" in request.outputs:
                import osmnx as ox

                ox.save_graphml(street_graph(vectors["streets"], snap_m=mpp),
                                stem.parent / f"{stem.name}_streets.graphml")
            samples.append({"sample": s, "buildings": int(len(vectors["buildings"])),
                            "street_segments": int(len(vectors["streets"])),
                            "parameters": compare(fields, names, achieved, windows, list(request.parameters))})
            progress.report("samples", s + 1, request.samples)
        report = _report(request, gen, samples, height, width, free, calibration)
        if "report" in request.outputs:
            write_report(report, tmp / "report.json", tmp / "report.md")
        (tmp / MARKER).write_text("urbangen generate output: generate --overwrite may replace this folder\n")
        _check_out_dir(out_dir, overwrite)  # again: files may have been put there while this ran
        partial.publish()
    except BaseException:
        partial.discard()
        raise
    return report


def is_generate_output(path: str | Path) -> bool:
    """Whether ``path`` is a folder that :func:`generate` wrote (it holds :data:`MARKER`)."""
    return (Path(path) / MARKER).is_file()


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Raise unless ``out_dir`` is missing, empty, or an earlier output that ``overwrite`` may replace."""
    check_replaceable(out_dir, is_generate_output,
                      f"an urbangen generate output (a folder with its {MARKER} file)")
    if not overwrite and out_dir.exists() and not is_empty_dir(out_dir):
        raise OutputExistsError(f"{out_dir} exists and is not empty (use --overwrite)")


def _write_geojson(frame, path: Path) -> None:
    """GeoJSON in WGS84 as RFC 7946 asks (an empty layer is still written)."""
    import geopandas as gpd

    frame = frame if isinstance(frame, gpd.GeoDataFrame) else gpd.GeoDataFrame(geometry=frame)
    frame.to_crs("EPSG:4326").to_file(path, driver="GeoJSON")


#: A window's request below this share of the training tiles' own, or above one less it, is outside what the
#: generator learned from: the report says so, since what it draws there is extrapolation.
OUTSIDE_TRAINING_SHARE = 0.01


def _among_training_tiles(calibration: Calibration | None, gen: Generator, name: str,
                          rows: list[dict]) -> dict[str, Any]:
    """Where a parameter's requests sit among the tiles the generator was trained on (its shipped calibration's
    fitting tiles that were counted for the parameter, those where it was both requested and measured): the
    share of them below the mean of every sample's window requests, and the windows asking for more (or less)
    than all but ``OUTSIDE_TRAINING_SHARE`` of them. Empty without a calibration that holds those tiles."""
    if calibration is None or name not in gen.spec.parameter_names:
        return {}
    j = list(gen.spec.parameter_names).index(name)
    mean, std = gen.spec.scaler_mean[j], gen.spec.scaler_std[j]
    requested = np.array([w["requested"] for r in rows for w in r["per_window"]], np.float64)
    requested = requested[np.isfinite(requested)]
    if not len(requested):
        return {}
    shares = calibration.share_below(name, (np.append(requested, requested.mean()) - mean) / std)
    if shares is None:
        return {}
    outside = (shares[:-1] < OUTSIDE_TRAINING_SHARE) | (shares[:-1] > 1 - OUTSIDE_TRAINING_SHARE)
    return {"compared_request_mean": float(requested.mean()), "training_tiles_below_request": float(shares[-1]),
            "windows_outside_training": int(outside.sum())}


def _report(request: GenerationRequest, gen: Generator, samples: list[dict], height: int,
            width: int, free: dict[str, float], calibration: Calibration | None) -> dict[str, Any]:
    """``free``: the mean value each parameter the file left free was asked as (urbangen.generate.imputation);
    ``calibration``: the generator's shipped one, if any."""
    average = {}
    for name in request.parameters:
        rows = [s["parameters"][name] for s in samples]
        errors = [r["mean_absolute_error"] for r in rows if r["mean_absolute_error"] is not None]
        achieved = [r["achieved_mean"] for r in rows if r["achieved_mean"] is not None]
        average[name] = {"unit": PARAMETERS[name][0], "requested_mean": rows[0]["requested_mean"],
                         "achieved_mean": float(np.mean(achieved)) if achieved else None,
                         "mean_absolute_error": float(np.mean(errors)) if errors else None,
                         "failed_windows": int(sum(r["failed_windows"] for r in rows)),
                         "windows": int(sum(len(r["per_window"]) for r in rows))}
    names = list(gen.spec.parameter_names)
    z = gen.spec.scaler.transform(np.array([[average[p]["requested_mean"] if p in average else free.get(p, np.nan)
                                             for p in names]]))
    for name, row in average.items():
        # What real tiles with this request measure through the same raster path (None: not calibrated).
        if calibration is not None and name in calibration.lines:
            row["real_tiles_measure"] = float(calibration.target([name], z, names)[0, 0])
        else:
            row["real_tiles_measure"] = None
        row |= _among_training_tiles(calibration, gen, name, [s["parameters"][name] for s in samples])
    mpp = gen.spec.meters_per_pixel
    return {"parameter_file": request.source, "checkpoint": request.model_ref, "model": gen.spec.kind,
            "checkpoint_step": gen.spec.step, "meters_per_pixel": mpp,
            "size_px": [width, height], "size_m": [width * mpp, height * mpp],
            "crs": request.crs, "origin": list(request.origin), "seed": request.seed,
            "candidates": candidates_of(gen), "target_scatter": request.target_scatter,
            "footprints": footprints_of(gen), "samples": samples,
            "average": average, "free_parameters_asked": free,
            "attribution": f"Model trained on map data {ATTRIBUTION}"}
