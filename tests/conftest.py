"""Shared fixtures: real OSM extracts through URBANGEN_OSM_DIR, no network, quiet progress."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("URBANGEN_NO_PROGRESS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from urbangen.settings import OSM_DIR_ENV, osm_data_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"

#: The extracts the tests read, relative to URBANGEN_OSM_DIR (see its SOURCES.md).
OSTERBRO = "copenhagen/osterbro_osm_bbox.osm.xml.gz"
LYNGBY = "copenhagen_lyngby/lyngby_osm_bbox.osm.xml.gz"
KENNESAW = "atlanta_kennesaw/kennesaw_osm_bbox.osm.xml.gz"
HOUSTON_GRAPHML = "houston/houston_tx_usa_drive.graphml"
HELSINKI = "helsinki/Helsinki.osm.pbf"


#: Marks a test file as integration even where no real-data fixture says so: it trains, installs,
#: runs the quickstart or reads the shipped models.
INTEGRATION_FILES = ("test_packaging.py", "test_quickstart.py", "test_shipped_models.py", "test_training.py")


#: The longest test files, longest first (seconds in a run of the suite on two workers, 2-core CPU, 2026-12-05:
#: training 483, quickstart 467, shipped models 379, analysis 220, parameters 204, generate 156, scale 75,
#: evaluation 55; every other file under 40). Under ``-n 2 --dist loadfile --no-loadscope-reorder`` files go to
#: the workers in collection order, so these start first and the short ones fill in behind them: with xdist's
#: own order (by number of tests) a long file could start last and keep one core busy alone at the end.
LONGEST_FILES = ("test_training.py", "test_quickstart.py", "test_shipped_models.py", "test_analysis.py",
                 "test_parameters.py", "test_generate.py", "test_scale.py", "test_evaluation.py")


def pytest_collection_modifyitems(config, items):
    """Mark the tests that read real OSM extracts (``osm_dir`` among their fixtures) or run whole workflows
    as ``integration``: ``pytest -m "not integration"`` is the quick check on synthetic arrays. The longest
    files first (:data:`LONGEST_FILES`), each file's tests in their order."""
    for item in items:
        if "osm_dir" in getattr(item, "fixturenames", ()) or item.path.name in INTEGRATION_FILES:
            item.add_marker(pytest.mark.integration)
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory) -> Path:
    """One persistent XLA compilation cache per test session, shared by its xdist workers and subprocesses.

    Most of a short training test's time is compiling: the tiny models recur from test to test with the
    same shapes, and a program compiled once is read back (e.g. 70 s to 13 s for three short runs). The
    programs are the same, so results are too. Workers take whole files, and files share models, so one
    worker reads back what the other compiled. (An entry read while the other worker is still writing it
    fails to decompress; JAX warns and compiles, as on a miss.)
    """
    import jax

    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is popen-gwN inside the session's own directory.
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax-compilation-cache"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return cache


#: Hosts that stay reachable in tests: the loopback interface is this machine (Dask's local cluster), not network.
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails at once instead of hanging.

    Unix-domain sockets and the loopback interface stay allowed: they are local IPC (W&B's offline
    service, a Dask LocalCluster's scheduler), not network.
    """

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    real_connect = socket.socket.connect
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        if sock.family == getattr(socket, "AF_UNIX", None) or (isinstance(address, tuple) and address[0] in LOOPBACK):
            return real_connect(sock, address)
        refuse()

    def create_connection(address, *args, **kwargs):
        if address[0] in LOOPBACK:
            return real_create_connection(address, *args, **kwargs)
        refuse()

    def getaddrinfo(host, *args, **kwargs):
        if host in LOOPBACK:
            return real_getaddrinfo(host, *args, **kwargs)
        refuse()

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def osm_dir() -> Path:
    base = osm_data_dir()
    if base is None or not base.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{OSM_DIR_ENV} must name the shared OSM folder in CI")
        pytest.skip(f"{OSM_DIR_ENV} is not set to the folder of OSM extracts")
    return base


@pytest.fixture(scope="session")
def osm_path(osm_dir):
    def resolve(relative: str) -> Path:
        path = osm_dir / relative
        assert path.is_file(), f"{relative} missing from {osm_dir}"
        return path

    return resolve


def overpass_json(osm_file) -> dict:
    """An Overpass API JSON response recorded from a real extract (nodes and ways)."""
    import osmium

    elements = []
    for obj in osmium.FileProcessor(str(osm_file)).with_filter(
            osmium.filter.EntityFilter(osmium.osm.NODE | osmium.osm.WAY)):
        if obj.is_node():
            if obj.location.valid():
                elements.append({"type": "node", "id": obj.id, "lat": obj.location.lat, "lon": obj.location.lon})
        elif len(obj.tags):
            elements.append(
                {"type": "way", "id": obj.id, "nodes": [n.ref for n in obj.nodes], "tags": dict(obj.tags)}
            )
    return {"version": 0.6, "generator": "recorded", "elements": elements}


@pytest.fixture
def recorded_osterbro_place(osm_path, monkeypatch) -> tuple[float, float, float, float]:
    """osmnx answers any place query from recordings: Nominatim with Østerbro's core, Overpass with its extract.

    Returns the core's (west, south, east, north) in degrees.
    """
    import osmnx as ox

    from data_pipeline import sources

    west, south, east, north = 12.5601, 55.6911, 12.5918, 55.7167  # Østerbro's core (SOURCES.md)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    nominatim = [{
        "place_id": 1, "osm_type": "relation", "osm_id": 1, "lat": "55.70", "lon": "12.57",
        "class": "boundary", "type": "administrative", "importance": 0.6,
        "display_name": "Østerbro, Copenhagen, Denmark",
        "boundingbox": [str(south), str(north), str(west), str(east)],
        "geojson": {"type": "Polygon", "coordinates": [ring]},
    }]
    response = overpass_json(osm_path(OSTERBRO))
    monkeypatch.setattr(ox.settings, "use_cache", False)
    monkeypatch.setattr(sources, "check_reachable", lambda url: None)
    monkeypatch.setattr(ox._nominatim, "_nominatim_request", lambda *a, **k: nominatim)
    # osmnx consumes the elements it parses: every request gets its own copy of the recording.
    monkeypatch.setattr(ox._overpass, "_overpass_request", lambda *a, **k: copy.deepcopy(response))
    return west, south, east, north


@contextlib.contextmanager
def ox_settings(**values):
    """osmnx settings changed for the block only (they are module globals)."""
    import osmnx as ox

    old = {k: getattr(ox.settings, k) for k in values}
    for k, v in values.items():
        setattr(ox.settings, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(ox.settings, k, v)


def load_config(model: str, variant: str = "test", **overrides):
    """An experiment config (``experiments/configs/MODEL.py:VARIANT``) with dotted-key overrides."""
    from urbangen.configs import experiment_config

    return experiment_config(model, variant, **overrides)


@pytest.fixture(scope="session")
def small_tiles(osm_path, tmp_path_factory) -> Path:
    """Real Østerbro (micromobility) and Kennesaw (car-centric) tiles: 64 px at 4 m/px, 1 km regions."""
    from data_pipeline.build import CitySpec, build_dataset
    from data_pipeline.config import TilingConfig

    out = tmp_path_factory.mktemp("tiles") / "cph_kennesaw"
    cities = [CitySpec(name="osterbro", osm_file=str(osm_path(OSTERBRO)), group="micromobility"),
              CitySpec(name="kennesaw", osm_file=str(osm_path(KENNESAW)), group="car-centric")]
    build_dataset(cities, out, TilingConfig(meters_per_pixel=4.0, tile_px=64, region_m=1024))
    return out


def wandb_records(run_file: str) -> list:
    """The protobuf records of an offline W&B run file (a LevelDB-style log, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    raw = Path(run_file).read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, chunk, records = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pos += 7
        chunk += raw[pos:pos + length]
        pos += length
        if kind in (1, 4):  # full or last fragment
            records.append(chunk)
            chunk = b""
    out = []
    for data in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        out.append(record)
    return out


def wandb_history(run_file: str) -> list[dict[str, str]]:
    """History rows of an offline W&B run file."""
    return [{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
            for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]


def min_area_rectangle(points: np.ndarray, step_deg: float = 0.01) -> tuple[float, float]:
    """Area and direction (radians, modulo a right angle) of the smallest rectangle holding ``points`` (n, 2),
    by brute force over rotations in ``step_deg`` steps (float64 NumPy): an independent reference for shapely's
    oriented envelopes."""
    angles = np.deg2rad(np.arange(0.0, 90.0, step_deg))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u, v = c * points[:, 0] + s * points[:, 1], -s * points[:, 0] + c * points[:, 1]
    areas = (u.max(axis=1) - u.min(axis=1)) * (v.max(axis=1) - v.min(axis=1))
    return float(areas.min()), float(angles[areas.argmin()])
