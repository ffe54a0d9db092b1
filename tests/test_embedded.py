"""The OSM extracts embedded in the package: shipped, small, attributed, and read like their sources."""

from __future__ import annotations

import fnmatch
import importlib.resources
import tomllib
from pathlib import Path

import osmium
import pytest

from data_pipeline import classify
from data_pipeline.features import TAG_COLUMNS
from tests.conftest import KENNESAW, OSTERBRO, ROOT
from urbangen.embedded import EMBEDDED_FILES, embedded_osm_file, embedded_osm_files, sources_note

#: Embedded city -> its source extract under URBANGEN_OSM_DIR.
SOURCE_OF = {"osterbro": OSTERBRO, "kennesaw": KENNESAW}


def test_embedded_files_ship_small_with_their_attribution():
    files = embedded_osm_files()
    assert list(files) == ["osterbro", "kennesaw"] == list(SOURCE_OF)
    package = Path(str(importlib.resources.files("urbangen")))
    for path in files.values():
        assert path.is_file() and path.is_relative_to(package), path
    assert sum(p.stat().st_size for p in files.values()) < 2_000_000

    # Declared as package data, so a wheel or a non-editable install carries them too.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["urbangen"]
    for path in [*files.values(), sources_note()]:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative

    note = sources_note().read_text()
    assert "© OpenStreetMap contributors" in note and "ODbL" in note
    for name, source in zip(EMBEDDED_FILES.values(), SOURCE_OF.values()):
        assert name in note and source in note
    with pytest.raises(KeyError, match="embedded: osterbro, kennesaw"):
        embedded_osm_file("atlantis")


@pytest.mark.parametrize("city", list(SOURCE_OF))
def test_embedded_file_is_its_source_filtered_to_the_tags_read(city, osm_path):
    """Every way with a key the pipeline reads, with today's TAG_COLUMNS, its node ids, sorted.

    Fails when TAG_COLUMNS or KEYS_READ changed and scripts/make_embedded_extracts.py was not re-run.
    """
    embedded, source = embedded_osm_file(city), osm_path(SOURCE_OF[city])
    keep = set(TAG_COLUMNS) | {"type"}
    expected = {}
    for way in osmium.FileProcessor(osmium.io.File(str(source), "osm.gz"), osmium.osm.WAY):
        if any(t.k in classify.KEYS_READ for t in way.tags):
            expected[way.id] = ([n.ref for n in way.nodes], {t.k: t.v for t in way.tags if t.k in keep})

    ways, order, node_ids = {}, [], set()
    for obj in osmium.FileProcessor(str(embedded)):
        order.append((obj.type_str(), obj.id))
        assert {t.k for t in obj.tags} <= keep, obj
        if obj.is_node():
            assert not len(obj.tags) and obj.location.valid()
            node_ids.add(obj.id)
        elif obj.is_way():
            ways[obj.id] = ([n.ref for n in obj.nodes], dict(obj.tags))
    assert order == sorted(order, key=lambda t: ("nwr".index(t[0]), t[1]))
    assert {k: ways[k] for k in expected} == expected  # member ways of multipolygons come on top
    assert node_ids == {ref for refs, _ in ways.values() for ref in refs}  # every referenced node, no more

    reader = osmium.io.Reader(str(embedded), osmium.osm.osm_entity_bits.NOTHING)
    header = reader.header()
    reader.close()
    assert SOURCE_OF[city] in header.get("generator") and header.get("sorting") == "Type_then_ID"


@pytest.mark.parametrize("city", list(SOURCE_OF))
def test_embedded_file_reads_like_its_source(city, osm_path):
    from data_pipeline.sources import read_osm_file

    raw = read_osm_file(osm_path(SOURCE_OF[city]))
    embedded = read_osm_file(embedded_osm_file(city))
    assert len(embedded.streets) == len(raw.streets) > 1000
    assert len(embedded.buildings) == len(raw.buildings) > 2000
    assert (len(embedded.open_space), len(embedded.water)) == (len(raw.open_space), len(raw.water))
    assert embedded.streets.geometry.geom_equals_exact(raw.streets.geometry, 0).all()
    assert embedded.buildings.geom_equals_exact(raw.buildings, 0).all()
    assert embedded.streets["highway"].tolist() == raw.streets["highway"].tolist()
    assert embedded.timestamp == raw.timestamp is not None  # the Overpass osm_base, kept in the PBF header
    assert embedded.extent == raw.extent is None  # not cropped, no bounds: the same estimated coverage
