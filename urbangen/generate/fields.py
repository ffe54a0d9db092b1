"""Parameter fields over a layout: constants, gradients, radial falloffs and GeoJSON zones."""

from __future__ import annotations

import numpy as np

from data_pipeline.errors import InvalidValueError
from urbangen.generate.request import GenerationRequest, ParameterField


def pixel_centres(height: int, width: int, meters_per_pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """Metres east and north of the layout's south-west corner, per pixel (row 0 is north)."""
    x = (np.arange(width) + 0.5) * meters_per_pixel
    y = (height - np.arange(height) - 0.5) * meters_per_pixel
    return np.meshgrid(x, y)


def evaluate_field(spec: ParameterField, height: int, width: int, meters_per_pixel: float,
                   request: GenerationRequest) -> np.ndarray:
    """Values of one parameter at every pixel, in the parameter's own units (float64, (H, W))."""
    xx, yy = pixel_centres(height, width, meters_per_pixel)
    w_m, h_m = width * meters_per_pixel, height * meters_per_pixel
    if spec.kind == "constant":
        return np.full((height, width), spec.value)
    if spec.kind == "gradient":
        assert spec.start is not None and spec.end is not None  # read_request checks each kind's fields
        dx, dy = spec.direction
        t = (xx / w_m if dx > 0 else 1 - xx / w_m) if dx else (yy / h_m if dy > 0 else 1 - yy / h_m)
        return spec.start + np.clip(t, 0.0, 1.0) * (spec.end - spec.start)
    if spec.kind == "radial":
        assert spec.centre is not None and spec.edge is not None and spec.radius_m is not None
        cx, cy = spec.centre_xy if spec.centre_xy is not None else (w_m / 2, h_m / 2)
        d = np.hypot(xx - cx, yy - cy)
        return spec.centre + (spec.edge - spec.centre) * np.minimum(d / spec.radius_m, 1.0)
    if spec.kind == "zones":
        return _zones(spec, height, width, meters_per_pixel, request)
    raise InvalidValueError(f"unknown field kind {spec.kind!r}")


def _zones(spec: ParameterField, height: int, width: int, meters_per_pixel: float,
           request: GenerationRequest) -> np.ndarray:
    """Rasterize zone polygons (GeoJSON, reprojected to the request's CRS, relative to its origin)."""
    import geopandas as gpd
    import rasterio.features
    from rasterio.transform import from_origin

    assert spec.default is not None  # read_request checks each kind's fields
    zones = gpd.read_file(spec.zones_path)
    if zones.crs is not None:
        zones = zones.to_crs(request.crs)
    x0, y0 = request.origin
    transform = from_origin(x0, y0 + height * meters_per_pixel, meters_per_pixel, meters_per_pixel)
    shapes = [(geom, float(v)) for geom, v in zip(zones.geometry, zones[spec.property]) if geom is not None]
    out = np.full((height, width), float(spec.default))
    if shapes:
        out = rasterio.features.rasterize(shapes, out_shape=(height, width), transform=transform,
                                          fill=float(spec.default), dtype="float64")
    return out


def parameter_fields(request: GenerationRequest, names: list[str], height: int, width: int,
                     meters_per_pixel: float) -> np.ndarray:
    """(H, W, P) fields in the checkpoint's parameter order; NaN where the request leaves a parameter free."""
    unknown = [n for n in request.parameters if n not in names]
    if unknown:
        from data_pipeline.errors import ParameterFileError

        raise ParameterFileError(request.source, f"parameters.{unknown[0]}",
                                 f"the checkpoint was not trained on it; it knows {', '.join(names)}")
    out = np.full((height, width, len(names)), np.nan)
    for i, name in enumerate(names):
        if name in request.parameters:
            out[..., i] = evaluate_field(request.parameters[name], height, width, meters_per_pixel, request)
    return out
