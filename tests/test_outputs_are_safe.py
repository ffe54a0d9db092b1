"""Nothing lost, nothing deleted that isn't ours: ``--overwrite``, concurrent writers, atomic JSON writes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from data_pipeline.atomic import OWNER_FILE, PartialDir, write_text_atomic
from data_pipeline.dataset import DatasetWriter, open_dataset
from data_pipeline.errors import DatasetError, ForeignDirectoryError, PipelineError
from tests.conftest import LYNGBY, ROOT
from urbangen.cli import app


def users_folder(path: Path) -> dict[str, bytes]:
    """A folder of someone's own files (one named like ours); returns its contents to compare with later."""
    (path / "thesis").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "thesis" / "chapter1.tex").write_text("\\chapter{One}\n")
    (path / "manifest.json").write_text('{"name": "my web app"}\n')  # a manifest, but not a dataset's
    return contents(path)


def contents(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def partials(parent: Path, name: str) -> list[Path]:
    return sorted(parent.glob(f".{name}.partial-*"))


def tiny_dataset(out: Path, *, overwrite: bool = False, city: str = "a") -> Path:
    """A one-tile dataset written with DatasetWriter directly: the contract without an OSM build."""
    with DatasetWriter(out, overwrite=overwrite) as writer:
        writer.add_city(city, 1, 8, 2, {"crs": "EPSG:3857"})
        writer.write_tiles(city, np.array([0]), np.ones((1, 8, 8, 2), np.uint8))
        writer.add_rows(pd.DataFrame({"tile_id": [f"{city}_0"], "city": [city], "raster_index": [0]}))
        return writer.commit({"tiling": {"meters_per_pixel": 4.0, "tile_px": 8}, "channels": [],
                              "parameters": []})


# --- data build --overwrite ---------------------------------------------------------------------------


def test_data_build_overwrite_refuses_a_users_folder_through_the_cli(osm_path, tmp_path):
    out = tmp_path / "mine"
    before = users_folder(out)
    for flags in (["--overwrite"], []):
        args = ["data", "build", "--osm-file", str(osm_path(LYNGBY)), "--out", str(out), *flags]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert "is not an urbangen dataset" in message and "nothing was touched" in message
        assert "notes.txt" in message  # says what it found
    assert contents(out) == before
    assert not partials(tmp_path, "mine")


def test_data_build_overwrite_refuses_a_file_and_a_manifest_of_another_format(tmp_path):
    (tmp_path / "a_file").write_text("data\n")
    with pytest.raises(ForeignDirectoryError, match="not a directory"):
        DatasetWriter(tmp_path / "a_file", overwrite=True)
    assert (tmp_path / "a_file").read_text() == "data\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ForeignDirectoryError, match="format_version 2") as err:
        DatasetWriter(other, overwrite=True)
    assert isinstance(err.value, PipelineError) and isinstance(err.value, FileExistsError)
    assert json.loads((other / "manifest.json").read_text()) == {"format_version": 99}


def test_a_dataset_is_replaced_only_with_overwrite_and_an_empty_folder_is_used(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    tiny_dataset(out, city="first")  # empty: used without --overwrite
    with pytest.raises(DatasetError, match="--overwrite"):
        tiny_dataset(out, city="second")
    assert list(open_dataset(out).manifest["cities"]) == ["first"]
    tiny_dataset(out, overwrite=True, city="second")
    assert list(open_dataset(out).manifest["cities"]) == ["second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no partial, old or lock file left
    assert not (out / OWNER_FILE).exists()


def test_a_dataset_of_an_older_format_is_refused_with_a_rebuild_hint_and_may_be_overwritten(tmp_path):
    out = tiny_dataset(tmp_path / "ds")
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(manifest | {"format_version": 1}))
    with pytest.raises(DatasetError, match="format 1, this urbangen reads 2; rebuild it"):
        open_dataset(out)
    tiny_dataset(out, overwrite=True, city="rebuilt")
    assert list(open_dataset(out).manifest["cities"]) == ["rebuilt"]


def test_files_put_into_the_folder_during_a_build_are_not_replaced(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    with pytest.raises(ForeignDirectoryError):
        with DatasetWriter(out) as writer:
            writer.add_city("a", 1, 8, 1, {})
            writer.add_rows(pd.DataFrame({"tile_id": ["a_0"]}))
            (out / "report.docx").write_text("written by hand while the build ran")
            writer.commit({})
    assert contents(out) == {"report.docx": b"written by hand while the build ran"}
    assert not partials(tmp_path, "ds")


# --- generate --overwrite ------------------------------------------------------------------------------


def parameter_file(tmp_path: Path) -> Path:
    """A valid parameter file; its "run" has a checkpoints/ folder, enough for the checks before loading."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": {"checkpoint": "run", "type": "vae"}, "size_m": 256,
                                    "parameters": {"building_coverage": 0.2}}))
    return path


def test_generate_overwrite_refuses_a_users_folder_through_the_cli(tmp_path):
    params, out = parameter_file(tmp_path), tmp_path / "mine"
    before = users_folder(out)
    result = CliRunner().invoke(app, ["generate", str(params), "--out", str(out), "--overwrite"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "is not an urbangen generate output" in message and "nothing was touched" in message
    assert contents(out) == before
    assert not partials(tmp_path, "mine")


def test_generate_overwrite_refuses_a_users_folder_in_python(tmp_path):
    from urbangen.generate.run import generate

    params, out = parameter_file(tmp_path), tmp_path / "mine"
    before = users_folder(out)
    for overwrite in (True, False):
        with pytest.raises(ForeignDirectoryError, match=r"\.urbangen-generate"):
            generate(params, out, overwrite=overwrite)
    assert contents(out) == before


# --- concurrent writers --------------------------------------------------------------------------------

HOLD_A_WRITER = """
import sys
from data_pipeline.dataset import DatasetWriter
writer = DatasetWriter(sys.argv[1])
print(writer.tmp_dir, flush=True)
sys.stdin.read()  # hold the writer open until the test says so
"""


def test_a_running_writers_partial_dir_survives_another_writer_and_a_dead_ones_does_not(tmp_path):
    out = tmp_path / "ds"
    other = subprocess.Popen([sys.executable, "-c", HOLD_A_WRITER, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        theirs = Path(other.stdout.readline().strip())
        assert theirs.is_dir() and (theirs / OWNER_FILE).read_text().startswith(f"pid {other.pid} on ")
        unknown = tmp_path / ".ds.partial-noowner"  # no owner file: not provably dead
        unknown.mkdir()
        with DatasetWriter(out) as mine:  # another build into the same parent, at the same time
            assert theirs.is_dir() and (theirs / "rasters").is_dir()
            assert mine.tmp_dir != theirs
            other.send_signal(signal.SIGKILL)
            other.wait()
            # The killed build's directory goes with the next writer; this process's running one stays.
            with DatasetWriter(out) as third:
                assert not theirs.exists()
                assert mine.tmp_dir.is_dir() and third.tmp_dir.is_dir() and unknown.is_dir()
        assert partials(tmp_path, "ds") == [unknown]
    finally:
        other.kill()
        other.wait()


def test_a_partial_dir_whose_owner_is_only_starting_is_left_alone(tmp_path):
    out = tmp_path / "x"
    starting = tmp_path / ".x.partial-starting"
    starting.mkdir()
    (starting / OWNER_FILE).write_text("")  # created, not yet locked and signed by its writer
    partial = PartialDir(out)
    assert starting.is_dir()
    partial.discard()
    assert not partial.path.exists()


# --- atomic JSON writes --------------------------------------------------------------------------------


def fail_replace(monkeypatch, name: str | None = None) -> None:
    """Make ``os.replace`` fail (for files called ``name``, or all): the process dies before the rename."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if name is None or Path(dst).name == name:
            raise KeyboardInterrupt("killed before the rename")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_an_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_text_atomic(path, '{"old": true}')
    # A failure while writing (an unencodable character half way) and one just before the rename.
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, '{"new": "' + "x" * 100_000 + '\ud800"}')
    fail_replace(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, '{"new": true}')
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left


def test_metrics_rewrite_on_resume_is_atomic_and_a_torn_last_line_is_dropped(tmp_path, monkeypatch):
    from urbangen.training.logging import RunLogger, read_metrics

    logger = RunLogger(tmp_path, {}, {"mode": "disabled"})
    for step in (1, 2, 3):
        logger.log(step, {"train/loss": 1.0 / step})
    before = (tmp_path / "metrics.jsonl").read_text()
    with monkeypatch.context() as m:
        fail_replace(m)
        with pytest.raises(KeyboardInterrupt):
            logger.truncate_after(2)
    assert (tmp_path / "metrics.jsonl").read_text() == before
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "train/lo')  # killed while appending
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    logger.truncate_after(3)
    logger.log(4, {"train/loss": 0.25})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]


def test_an_interrupted_quickstart_plan_write_keeps_the_old_plan(tmp_path, monkeypatch):
    from urbangen.quickstart import _claim

    out, plan = tmp_path / "qs", {"cities": ["first"], "seed": 0}
    _claim(out, plan, overwrite=False)
    (out / "summary.json").write_text("{}")  # a stage finished: a rerun resumes from this plan

    def killed_mid_write(fd):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(os, "fsync", killed_mid_write)  # the new text is written but not yet in place
    with pytest.raises(KeyboardInterrupt):
        _claim(out, plan, overwrite=False)
    assert json.loads((out / "quickstart.json").read_text()) == plan
    assert sorted(p.name for p in out.iterdir()) == ["figures", "quickstart.json", "summary.json"]


def test_an_interrupted_quickstart_summary_write_keeps_what_a_resume_reads(tmp_path, monkeypatch):
    from data_pipeline.build import CitySpec
    from urbangen import quickstart

    out, cities = tmp_path / "qs", [CitySpec("tiny", osm_file=str(tmp_path / "tiny.osm"))]
    quiet = Console(file=io.StringIO())

    def stops_training(*args, **kwargs):
        raise KeyboardInterrupt("stopped during training")

    monkeypatch.setattr(quickstart, "_build", lambda out, cities: {"tiles": 1})
    monkeypatch.setattr(quickstart, "_train", stops_training)
    with pytest.raises(KeyboardInterrupt, match="training"):
        quickstart.run_quickstart(out, cities, console=quiet)
    before = (out / "summary.json").read_text()
    assert json.loads(before)["results"] == {"data": {"tiles": 1}}
    monkeypatch.setattr(quickstart, "_build", lambda out, cities: {"tiles": 2})
    fail_replace(monkeypatch, "summary.json")
    with pytest.raises(KeyboardInterrupt, match="rename"):
        quickstart.run_quickstart(out, cities, console=quiet)  # the build stage reruns (no data/ kept)
    assert (out / "summary.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

