"""Which way imports point (docs/architecture.md): no module imports one from a later layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Layer 5 of docs/architecture.md, in order: each may import only those before it.
ORDER = ("vectorize", "measure", "generate", "evaluators", "evaluate", "analysis")


def _imported(path: Path) -> set[str]:
    """The ``urbangen.X`` modules a file imports (at any depth, lazily inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("urbangen."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("urbangen.")}
    return names


def test_layer_five_imports_point_backwards_only():
    wrong = []
    for i, name in enumerate(ORDER):
        package = ROOT / "urbangen" / name
        files = sorted(package.glob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
        assert files and all(f.is_file() for f in files), name
        for f in files:
            wrong += [(f.relative_to(ROOT).as_posix(), later) for later in _imported(f) & set(ORDER[i + 1:])]
    assert not wrong, wrong


def test_data_pipeline_imports_nothing_of_urbangen():
    wrong = [f.name for f in (ROOT / "data_pipeline").glob("*.py") if _imported(f)]
    assert not wrong, wrong


def test_inference_loads_runs_without_the_training_code():
    """Layer 3 below layer 4: a generator, an evaluation or a notebook never imports the trainers."""
    wrong = [name for name in ("inference", "pretrained", "checkpoints")
             if "training" in _imported(ROOT / "urbangen" / f"{name}.py")]
    assert not wrong, wrong


def test_configs_sit_below_the_trainers_and_the_trainers_below_the_evaluators():
    """Layer 4 in order: configs import no trainer; trainers get evaluators passed in (``val_scorers``)."""
    def package(name: str) -> set[str]:
        return set().union(*(_imported(f) for f in (ROOT / "urbangen" / name).glob("*.py")))

    assert "training" not in package("configs")
    assert not package("training") & {"configs", *ORDER}
