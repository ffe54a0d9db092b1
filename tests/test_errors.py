"""One error base class: every error raised on purpose derives from it, and the CLI prints it as one line."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from data_pipeline import errors


def test_every_error_class_derives_from_the_one_base():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 15
    assert all(issubclass(c, errors.UrbangenError) for c in classes)


def test_no_bare_builtin_error_is_raised_on_purpose():
    """Raised built-ins bypass the CLI's one-line report; only programming errors may stay built-in."""
    allowed = {"RuntimeError"}  # Realism used out of order: a bug in the caller, not bad input
    found = []
    for path in [*ROOT.glob("urbangen/**/*.py"), *ROOT.glob("data_pipeline/*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = re.search(r"\braise (ValueError|FileNotFoundError|FileExistsError|KeyError|RuntimeError|TypeError)\(",
                          line)
            if m and m.group(1) not in allowed:
                found.append(f"{path.relative_to(ROOT)}:{n}")
    assert not found


@pytest.mark.integration  # the installed command line, in a subprocess
@pytest.mark.parametrize("command", [["evaluate", "--checkpoint", "city-64"], ["analyze"]])
def test_a_missing_dataset_is_one_line_without_a_traceback(command, tmp_path):
    result = subprocess.run([sys.executable, "-m", "urbangen.cli", *command, "--dataset", str(tmp_path / "nowhere"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2
    assert "Traceback" not in output and output.count("\n") == 0
    assert output.startswith("error:") and "no such dataset directory" in output


@pytest.mark.parametrize("tiles", ["0", "1"])
def test_too_few_tiles_to_evaluate_is_one_line(tiles, tmp_path):
    """On the command line, before anything loads; from Python, before the model loads."""
    from data_pipeline.errors import InvalidValueError
    from urbangen.evaluate import evaluate

    result = subprocess.run([sys.executable, "-m", "urbangen.cli", "evaluate", "--checkpoint", "city-64",
                             "--dataset", str(tmp_path), "--tiles", tiles, "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "Traceback" not in output and "--tiles" in output
    with pytest.raises(InvalidValueError, match="at least 2 held-out tiles"):
        evaluate("no-such-model", tmp_path, tmp_path / "out", max_tiles=int(tiles))
    with pytest.raises(InvalidValueError, match="regions is 'val': choose test .* or validation"):
        evaluate("no-such-model", tmp_path, tmp_path / "out", regions="val")  # before the model loads
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--max-tiles", "--bootstrap"])
def test_an_analysis_of_too_few_tiles_or_resamples_is_refused(option, tmp_path):
    from data_pipeline.errors import InvalidValueError
    from urbangen.analysis.run import analyze

    result = subprocess.run([sys.executable, "-m", "urbangen.cli", "analyze", "--dataset", str(tmp_path),
                             option, "1", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "Traceback" not in output and option in output
    keyword = {"--max-tiles": "max_tiles_per_city", "--bootstrap": "n_boot"}[option]
    with pytest.raises(InvalidValueError, match=f"{keyword} is 1"):
        analyze(tmp_path, tmp_path / "out", **{keyword: 1})
    assert not (tmp_path / "out").exists()


def test_a_chain_where_one_model_is_needed_is_named_as_such():
    from urbangen.analysis.run import _load

    # The shipped city-64 is a chain (streets, then buildings): the analysis embeds with one VAE.
    with pytest.raises(errors.InvalidValueError, match="is a chain of models"):
        _load("city-64", None)
