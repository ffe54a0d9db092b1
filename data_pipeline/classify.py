"""Which OSM tags feed which raster channel and parameter.

The classes here are the single source of truth for the channel definitions
documented in the README ("Channels").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Street classes by ``highway=*`` value. Each street way falls in exactly one.
MAJOR_HIGHWAYS = frozenset(
    {
        "motorway", "motorway_link", "trunk", "trunk_link",
        "primary", "primary_link", "secondary", "secondary_link",
    }
)
MINOR_HIGHWAYS = frozenset(
    {"tertiary", "tertiary_link", "residential", "unclassified", "living_street", "service", "road"}
)
CYCLE_FOOT_HIGHWAYS = frozenset(
    {"cycleway", "footway", "path", "pedestrian", "steps", "track", "bridleway"}
)
#: The drive and walk networks (intersections, dead ends, orientation entropy,
#: walk density) are osmnx's own filters: see :mod:`data_pipeline.street_graph`.

#: ``cycleway*`` values that mean a cycle track or lane drawn on the street
#: itself. ``separate`` is left out: that cycleway is its own way already.
CYCLE_ON_STREET_VALUES = frozenset(
    {"track", "lane", "opposite_track", "opposite_lane", "buffered_lane"}
)
CYCLE_ON_STREET_KEYS = ("cycleway", "cycleway:both", "cycleway:left", "cycleway:right")

#: Road width drawn in the raster, metres, per ``highway=*`` value.
ROAD_WIDTH_M: dict[str, float] = {
    "motorway": 16.0, "trunk": 14.0, "primary": 12.0, "secondary": 10.0,
    "motorway_link": 6.0, "trunk_link": 6.0, "primary_link": 6.0, "secondary_link": 6.0,
    "tertiary": 8.0, "tertiary_link": 6.0, "residential": 6.0, "unclassified": 6.0,
    "living_street": 5.0, "road": 5.0, "service": 4.0,
    "cycleway": 2.0, "footway": 2.0, "path": 2.0, "pedestrian": 4.0, "steps": 2.0,
    "track": 3.0, "bridleway": 2.0,
}
#: Width of a cycle track or lane drawn along a street in the cycle/foot channel.
CYCLE_LANE_WIDTH_M = 2.0

OPEN_SPACE_TAGS: dict[str, frozenset[str]] = {
    "leisure": frozenset({"park", "garden", "playground", "recreation_ground", "common", "dog_park"}),
    "landuse": frozenset({"grass", "recreation_ground", "village_green"}),
    "place": frozenset({"square"}),
}
WATER_TAGS: dict[str, frozenset[str]] = {
    "natural": frozenset({"water"}),
    "waterway": frozenset({"riverbank", "dock"}),
    "landuse": frozenset({"reservoir", "basin"}),
}
#: Tag keys :func:`area_layer` reads.
AREA_KEYS = ("building", "highway", "area", *dict.fromkeys([*OPEN_SPACE_TAGS, *WATER_TAGS]))
#: OSM keys the readers need to see; everything else is skipped while parsing.
KEYS_READ = ("highway", "building", "leisure", "landuse", "natural", "waterway", "place")


def street_class(highway: str | None) -> str | None:
    """Return ``'major'``, ``'minor'``, ``'cycle_foot'`` or None for a ``highway`` value."""
    if highway in MAJOR_HIGHWAYS:
        return "major"
    if highway in MINOR_HIGHWAYS:
        return "minor"
    if highway in CYCLE_FOOT_HIGHWAYS:
        return "cycle_foot"
    return None


def cycle_infrastructure(tags) -> np.ndarray:
    """Per row of a tag frame: True when the street carries a cycle track or lane tagged on the street itself."""
    import numpy as np

    keys = [k for k in CYCLE_ON_STREET_KEYS if k in tags.columns]
    if not keys:
        return np.zeros(len(tags), dtype=bool)
    return tags[keys].isin(CYCLE_ON_STREET_VALUES).any(axis=1).to_numpy(dtype=bool)


def _matches(tags: Mapping[str, str], table: Mapping[str, frozenset[str]]) -> bool:
    return any(tags.get(k) in values for k, values in table.items())


def area_layer(tags: Mapping[str, str]) -> str | None:
    """Return the polygon layer (``building``, ``open_space``, ``water``) of an OSM area."""
    building = tags.get("building")
    if building is not None and building != "no":
        return "building"
    if _matches(tags, WATER_TAGS):
        return "water"
    if _matches(tags, OPEN_SPACE_TAGS):
        return "open_space"
    if tags.get("highway") == "pedestrian" and tags.get("area") == "yes":
        return "open_space"
    return None
