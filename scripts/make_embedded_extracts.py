"""Make the OSM extracts embedded in the package (``urbangen/data/osm/``) from the shared ones.

Run from the repository root, with ``URBANGEN_OSM_DIR`` naming the shared OSM
folder (laid out as in its ``SOURCES.md``)::

    URBANGEN_OSM_DIR=../shared/osm python scripts/make_embedded_extracts.py

Each source file is filtered to what the pipeline reads and written as
``.osm.pbf``:

* every way, and every ``type=multipolygon`` relation, that has a key of
  :data:`data_pipeline.classify.KEYS_READ`, plus the member ways of those
  relations;
* on them, only the keys of :data:`data_pipeline.features.TAG_COLUMNS` and
  ``type`` (both read when the script runs, so re-run it when they change);
* every node those ways reference, with its location and no tags. Way node
  references stay intact (street topology can be built from node ids) and
  nothing is cropped;
* sorted by type then id, with the Overpass ``osm_base`` time stamp of the
  source as the PBF's replication time stamp (the pipeline's data time stamp)
  and the source file and its sha256 in the writing-program field.

The script is not needed at run time; it documents and reproduces the files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import osmium

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout, installed or not

from data_pipeline import classify, features  # noqa: E402
from urbangen import embedded  # noqa: E402
from urbangen.settings import osm_file  # noqa: E402

#: Embedded file name -> source file, relative to URBANGEN_OSM_DIR.
SOURCES = {
    "osterbro.osm.pbf": "copenhagen/osterbro_osm_bbox.osm.xml.gz",
    "kennesaw.osm.pbf": "atlanta_kennesaw/kennesaw_osm_bbox.osm.xml.gz",
}
#: Together the embedded files must stay small enough to ship in a wheel.
MAX_TOTAL_BYTES = 2_000_000


@dataclass
class Extract:
    """The kept objects of one file, as plain data (osmium objects die with their buffer)."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)
    ways: dict[int, tuple[list[int], dict[str, str]]] = field(default_factory=dict)
    relations: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = field(default_factory=dict)


def kept_keys() -> frozenset[str]:
    """Tag keys kept on kept objects: what the pipeline reads, and ``type`` for multipolygons."""
    return frozenset(features.TAG_COLUMNS) | {"type"}


def _read_format(path: Path) -> osmium.io.File:
    """An osmium input file; libosmium does not recognise the ``.osm.xml.gz`` ending by itself."""
    name = path.name.lower()
    if name.endswith(".pbf"):
        return osmium.io.File(str(path), "pbf")
    return osmium.io.File(str(path), "osm.gz" if name.endswith(".gz") else "osm")


def osm_base(path: Path) -> str:
    """The Overpass ``osm_base`` data time stamp in the XML's ``<meta>`` element."""
    with gzip.open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", "replace")
    match = re.search(r'<meta[^>]*\bosm_base="([^"]+)"', head)
    if match is None:
        raise ValueError(f"{path}: no <meta osm_base=...> in the file's head")
    return match.group(1)


def filter_extract(path: Path) -> Extract:
    """Two passes: choose ways and relations (and their member ways), then the nodes they reference."""
    read = frozenset(classify.KEYS_READ)
    keep = kept_keys()
    out = Extract()
    member_ways: set[int] = set()
    candidates: dict[int, tuple[list[int], dict[str, str]]] = {}  # untagged ways, kept if a relation uses them
    for obj in osmium.FileProcessor(_read_format(path), osmium.osm.WAY | osmium.osm.RELATION):
        tags = {t.k: t.v for t in obj.tags if t.k in keep}
        relevant = any(t.k in read for t in obj.tags)
        if obj.is_way():
            refs = [n.ref for n in obj.nodes]
            (out.ways if relevant else candidates)[obj.id] = (refs, tags)
        elif relevant and obj.tags.get("type") == "multipolygon":
            members = [(m.type, m.ref, m.role) for m in obj.members]
            out.relations[obj.id] = (members, tags)
            member_ways.update(ref for kind, ref, _ in members if kind == "w")
    for way_id in member_ways - out.ways.keys():
        if way_id in candidates:  # else outside the source file too: nothing to keep
            out.ways[way_id] = candidates[way_id]

    needed = {ref for refs, _ in out.ways.values() for ref in refs}
    for node in osmium.FileProcessor(_read_format(path), osmium.osm.NODE):
        if node.id in needed and node.location.valid():
            out.nodes[node.id] = (node.location.lon, node.location.lat)
    missing = needed - out.nodes.keys()
    if missing:  # the shared sources are complete; a gap would change street geometry
        raise ValueError(f"{path}: {len(missing)} referenced nodes have no location, "
                         f"e.g. {sorted(missing)[:5]}")
    return out


def write_pbf(extract: Extract, target: Path, *, source: str, sha256: str, timestamp: str) -> None:
    """Write sorted by type then id, without per-object metadata (the sources have none)."""
    header = osmium.io.Header()
    header.set("generator", f"urbangen scripts/make_embedded_extracts.py from {source} "
                            f"(sha256 {sha256})")
    header.set("osmosis_replication_timestamp", timestamp)
    header.set("sorting", "Type_then_ID")
    target.unlink(missing_ok=True)
    writer = osmium.SimpleWriter(osmium.io.File(str(target), "pbf,add_metadata=false"), header=header)
    try:
        for node_id in sorted(extract.nodes):
            writer.add_node(osmium.osm.mutable.Node(id=node_id, location=extract.nodes[node_id], tags={}))
        for way_id in sorted(extract.ways):
            refs, tags = extract.ways[way_id]
            writer.add_way(osmium.osm.mutable.Way(id=way_id, nodes=refs, tags=tags))
        for rel_id in sorted(extract.relations):
            members, tags = extract.relations[rel_id]
            writer.add_relation(osmium.osm.mutable.Relation(id=rel_id, members=members, tags=tags))
    finally:
        writer.close()


def make(name: str, relative: str, out_dir: Path) -> Path:
    """Filter one shared extract into ``out_dir/name``; returns the path written."""
    source = osm_file(relative)
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    extract = filter_extract(source)
    target = out_dir / name
    write_pbf(extract, target, source=relative, sha256=sha256, timestamp=osm_base(source))
    print(f"{relative} -> {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}: "
          f"{len(extract.nodes)} nodes, {len(extract.ways)} ways, {len(extract.relations)} relations, "
          f"{target.stat().st_size:,} bytes")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=embedded.OSM_DIR_IN_PACKAGE,
                        help="Folder to write (default: the package's data/osm).")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"keeping tag keys: {', '.join(sorted(kept_keys()))}")
    written = [make(name, relative, args.out_dir) for name, relative in SOURCES.items()]
    total = sum(p.stat().st_size for p in written)
    print(f"total {total:,} bytes")
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"the embedded extracts take {total:,} bytes, over the {MAX_TOTAL_BYTES:,} allowed")


if __name__ == "__main__":
    main()
