"""A fixed street network (GeoJSON lines or osmnx GraphML) rasterized into the checkpoint's input channels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from data_pipeline.config import TilingConfig
from data_pipeline.errors import ParameterFileError
from data_pipeline.features import TAG_COLUMNS, OSMFeatures, street_frame
from data_pipeline.rasterize import channel_geometries
from urbangen.generate.request import GenerationRequest


def read_streets(request: GenerationRequest) -> gpd.GeoDataFrame:
    """Street lines in the request's CRS, with ``highway`` (default ``residential``) and the other tags the
    pipeline reads where the file has them (``access``, ``service``, ``cycleway``...): a private or service
    way is left out of the road channels as in the training data
    (:func:`data_pipeline.rasterize.channel_geometries`)."""
    path = request.streets
    if path is None:
        raise ParameterFileError(request.source, "streets", "no street network given")
    try:
        if path.suffix.lower() == ".graphml":
            import osmnx as ox

            frame = ox.graph_to_gdfs(ox.load_graphml(path), nodes=False).reset_index(drop=True)
        else:
            frame = gpd.read_file(path)
    except Exception as err:  # noqa: BLE001
        raise ParameterFileError(request.source, "streets", f"cannot read {path}: {err}") from err
    frame = frame[frame.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    if frame.empty:
        raise ParameterFileError(request.source, "streets", f"{path} holds no lines")
    if frame.crs is not None:
        frame = frame.to_crs(request.crs)
    highway = frame["highway"] if "highway" in frame.columns else ["residential"] * len(frame)
    highway = [h[0] if isinstance(h, list) else (h if isinstance(h, str) else "residential") for h in highway]
    # As the file has them: street_frame reads each tag as the pipeline does (a list's first value, NaN absent).
    tags = {k: frame[k].to_numpy(dtype=object) for k in TAG_COLUMNS if k in frame.columns and k != "highway"}
    frame = gpd.GeoDataFrame({"highway": highway, **tags}, geometry=frame.geometry.values, crs=request.crs)
    streets = street_frame(frame.explode(index_parts=False).reset_index(drop=True))
    return streets[streets["street_class"] != "other"].reset_index(drop=True)


def rasterize_streets(request: GenerationRequest, channels: list[str], height: int, width: int,
                      meters_per_pixel: float) -> np.ndarray:
    """(H, W, len(channels)) uint8 street channels, drawn as the data pipeline draws them."""
    import rasterio.features
    from rasterio.transform import from_origin

    streets = read_streets(request)
    empty = gpd.GeoSeries([], crs=request.crs)
    features = OSMFeatures(streets=streets, buildings=empty, open_space=empty, water=empty, source=str(request.streets))
    config = TilingConfig(meters_per_pixel=meters_per_pixel, channels=tuple(channels))
    geoms = channel_geometries(features, config)
    x0, y0 = request.origin
    transform = from_origin(x0, y0 + height * meters_per_pixel, meters_per_pixel, meters_per_pixel)
    out = np.zeros((height, width, len(channels)), np.uint8)
    for i, name in enumerate(channels):
        shapes = [g for g in geoms[name] if g is not None and not shapely.is_empty(g)]
        if shapes:
            out[..., i] = rasterio.features.rasterize(shapes, out_shape=(height, width), transform=transform,
                                                      dtype="uint8")
    return out
