"""A non-editable install (a wheel, as `pip install .` or pip from a git URL makes) has everything the main job
needs."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import json, subprocess, sys
from pathlib import Path
import urbangen
from urbangen.configs import experiment_config
from urbangen.examples import example_files, copy_examples
from urbangen.embedded import embedded_osm_files
from urbangen.generate.selection import Calibration
from urbangen.pretrained import CALIBRATIONS, SHIPPED, shipped_file

out = {"file": urbangen.__file__}
out["configs"] = {m: experiment_config(m, "test").model for m in ("pix2pix", "vae", "encoder")}
out["params"] = sorted(example_files("params"))
out["cities"] = sorted(example_files("cities"))
out["osm"] = {k: p.stat().st_size for k, p in embedded_osm_files().items()}
out["models"] = {f: shipped_file(f).stat().st_size for files in SHIPPED.values() for f in files}
calibrations = {f: Calibration.read(shipped_file(f)) for f in CALIBRATIONS.values()}
out["calibrations"] = {f: [len(c.lines), len(c.residuals)] for f, c in calibrations.items()}
out["calibration_bytes"] = sum(shipped_file(f).stat().st_size + shipped_file(f).with_suffix(".npz").stat().st_size
                               for f in CALIBRATIONS.values())
out["copied"] = len(copy_examples(Path("examples-out")))
print(json.dumps(out))
"""


def test_a_wheel_installed_elsewhere_has_configs_examples_data_and_models(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("urbangen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith(("tests/", "experiments/", "benchmarks/")) for n in names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, cwd=tmp_path)
    work = tmp_path / "elsewhere"  # not the repository: nothing of the clone is in reach
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=work, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site)
    assert out["configs"] == {"pix2pix": "pix2pix", "vae": "vae", "encoder": "encoder"}
    assert out["params"] == sorted(p.name for p in (ROOT / "experiments" / "params").glob("*.yaml"))
    assert out["cities"] == sorted(p.name for p in (ROOT / "experiments" / "cities").glob("*.yaml"))
    assert set(out["osm"]) == {"osterbro", "kennesaw"} and min(out["osm"].values()) > 100_000
    assert min(out["models"].values()) > 100_000
    assert sum(out["models"].values()) + out["calibration_bytes"] <= 40 * 2**20
    # A line per parameter of city-64, and the scatter of its 2534 training tiles about them (the .npz beside).
    assert out["calibrations"] == {"city_64_calibration.json": [13, 2534], "buildings_256_calibration.json": [5, 366]}
    assert out["copied"] == len(out["params"]) + len(out["cities"])
    assert (work / "examples-out" / "params" / "houston_like_suburb.yaml").is_file()


def test_examples_are_copied_without_overwriting_and_named_examples_resolve(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from urbangen.cli import app
    from urbangen.examples import example_files, resolve

    runner = CliRunner()
    first = runner.invoke(app, ["examples", "--out", str(tmp_path / "ex")])
    assert first.exit_code == 0, first.output
    mine = tmp_path / "ex" / "params" / "houston_like_suburb.yaml"
    mine.write_text("# my edits\n")
    again = runner.invoke(app, ["examples", "--out", str(tmp_path / "ex")])
    assert again.exit_code != 0 and "houston_like_suburb.yaml" in again.output
    assert mine.read_text() == "# my edits\n"  # untouched
    monkeypatch.chdir(tmp_path)
    assert resolve("houston_like_suburb.yaml", "params") == example_files("params")["houston_like_suburb.yaml"]
    assert json.loads(json.dumps(str(resolve(mine, "params")))) == str(mine)  # an existing file is itself
