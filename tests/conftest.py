"""Shared fixtures: real OSM extracts through URBANGEN_OSM_DIR, no network, quiet progress."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("URBANGEN_NO_PROGRESS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from urbangen.settings import OSM_DIR_ENV, osm_data_dir  # noqa: E402

#: The extracts the tests read, relative to URBANGEN_OSM_DIR (see its SOURCES.md).
OSTERBRO = "copenhagen/osterbro_osm_bbox.osm.xml.gz"
LYNGBY = "copenhagen_lyngby/lyngby_osm_bbox.osm.xml.gz"
KENNESAW = "atlanta_kennesaw/kennesaw_osm_bbox.osm.xml.gz"
HOUSTON_GRAPHML = "houston/houston_tx_usa_drive.graphml"
HELSINKI = "helsinki/Helsinki.osm.pbf"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails at once instead of hanging.

    Unix-domain sockets stay allowed: they are local IPC (W&B's offline service uses one), not network.
    """

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real_connect(sock, address)
        refuse()

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


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
