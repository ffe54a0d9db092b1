"""Trained models that ship inside the package, and the single-file format they ship in.

A model file (``.msgpack``) holds one trained network: its
:class:`~urbangen.inference.RunSpec` (kind, channels, tiles, parameters and
their scaler, the config that builds its modules, the split it was trained
on) and the weights inference needs, in Flax's msgpack serialization. It
needs no checkpoint folder and no training code, and it works from a
non-editable install.

Shipped models (their cards are in the README and in ``data/models/MODELS.md``):

- ``city-64``: the three-stage generator, 64 px tiles at 4 m/px: in layouts
  of 1 km and more, major roads over 1 km at 16 m/px (a VAE over their
  proximity fields); a street network from street parameters (a VAE over
  street proximity fields; in a layout its own major roads become minor roads
  where the arterial stage drew them); then buildings, open space and water
  around the streets (pix2pix with a latent field);
- ``buildings-256``: buildings, open space and water around a given street
  network at 2 m/px in 256 px tiles (pix2pix with a latent field, trained on
  a GPU): what ``urbangen generate`` draws with ``model: buildings-256`` and
  ``streets:`` a GeoJSON or GraphML file;
- ``encoder-64``: the attention encoder whose embedding the realism metrics use.

Map data © OpenStreetMap contributors, under the ODbL.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from data_pipeline.errors import InvalidValueError, RunSpecError
from urbangen.inference import GeneratorChain, RunSpec, TrainedModel, load_run, model_from_spec

#: The format tag written into every model file.
FORMAT = "urbangen-model/1"

#: Shipped model name -> its files in ``urbangen/data/models/``, one per stage, in order.
SHIPPED: dict[str, tuple[str, ...]] = {
    "city-64": ("city_arterials_64.msgpack", "city_streets_64.msgpack", "city_buildings_64.msgpack"),
    "buildings-256": ("buildings_256.msgpack",),
    "encoder-64": ("encoder_64.msgpack",),
}
#: Shipped generator name -> what real tiles measure for a request through the raster path, fitted on its
#: training tiles (:mod:`urbangen.generate.selection`; ``scripts/fit_selection_calibration.py``).
CALIBRATIONS: dict[str, str] = {"city-64": "city_64_calibration.json",
                                "buildings-256": "buildings_256_calibration.json"}
DEFAULT_GENERATOR = "city-64"
DEFAULT_ENCODER = "encoder-64"


def export_model(model: TrainedModel, path: str | Path, dtype: str = "float32") -> Path:
    """Write ``model`` (spec and weights) to one file.

    ``dtype`` ``float16`` halves the file (the shipped models, within the
    package's 40 MB); weights are read back as float32 either way, and
    ``tests/test_shipped_models.py`` bounds what the rounding changes.
    """
    import jax
    from flax import serialization

    path = Path(path)
    variables = jax.tree.map(lambda a: np.asarray(a, np.float32).astype(dtype), model.variables)
    payload = {"format": FORMAT, "spec": json.dumps(portable_spec(model.spec).model_dump()),
               "variables": serialization.to_state_dict(variables)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(payload))
    os.replace(tmp, path)
    return path


def portable_spec(spec: RunSpec) -> RunSpec:
    """``spec`` with its run and dataset folders named as a file to share should name them.

    A model file travels (the package ships them), so it carries no path of the machine it was
    exported on: an absolute run or dataset folder is written as its last part (``/home/me/runs/a``
    as ``a``); a relative one, which names no machine, as it is.
    """
    config = dict(spec.config)
    if isinstance(config.get("dataset"), str):
        config["dataset"] = _portable_path(config["dataset"])
    return spec.model_copy(update={"workdir": _portable_path(spec.workdir),
                                   "dataset": _portable_path(spec.dataset), "config": config})


def _portable_path(value: str) -> str:
    path = Path(value)
    return path.name if path.is_absolute() else value


def read_model(path: str | Path) -> TrainedModel:
    """A model file written by :func:`export_model`.

    Raises
    ------
    RunSpecError
        If the file is missing or is not an urbangen model file.
    """
    from flax import serialization

    path = Path(path)
    if not path.is_file():
        raise RunSpecError(f"no model file {path}")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - msgpack raises several kinds on a foreign file
        raise RunSpecError(f"{path} is not an urbangen model file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunSpecError(f"{path} is not an urbangen model file (format {FORMAT})")
    import jax

    spec = RunSpec(**json.loads(payload["spec"]))
    return model_from_spec(spec, jax.tree.map(lambda a: np.asarray(a, np.float32), payload["variables"]))


def shipped_file(filename: str) -> Path:
    """Path of a shipped model file, read through ``importlib.resources`` (works from any install)."""
    path = Path(str(importlib.resources.files("urbangen") / "data" / "models" / filename))
    if not path.is_file():
        raise RunSpecError(f"the package lacks its shipped model {filename} (looked at {path}); reinstall urbangen")
    return path


def load_shipped(name: str = DEFAULT_GENERATOR) -> TrainedModel | GeneratorChain:
    """A shipped model by name (see :data:`SHIPPED`); a chain when it has several stages, or draws around given
    channels (so that it samples by selection as every shipped generator does)."""
    if name not in SHIPPED:
        raise RunSpecError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    stages = tuple(read_model(shipped_file(f)) for f in SHIPPED[name])
    if len(stages) == 1 and not stages[0].spec.input_channels:
        return stages[0]
    return GeneratorChain.of(name, stages, stages[0].spec.input_channels)


def load_model(ref: str | Path | Sequence[str | Path], step: Any = "best") -> TrainedModel | GeneratorChain:
    """A model from a shipped name, a model file, or a training run folder (``step`` applies to runs).

    A sequence of those is a chain, each stage drawing around what the earlier ones drew
    (a street stage, then a buildings stage trained on the same dataset).
    """
    if isinstance(ref, (list, tuple)):
        stages = [load_model(r, step) for r in ref]
        models = tuple(st for st in stages if isinstance(st, TrainedModel))
        if len(models) != len(stages):
            raise RunSpecError("a chain's stages must each be one model (a file or a run folder)")
        return GeneratorChain.of(" + ".join(str(r) for r in ref), models)
    if str(ref) in SHIPPED:
        return load_shipped(str(ref))
    path = Path(cast(str | Path, ref))  # not a list or tuple: checked above
    if path.is_dir():
        return load_run(path, step)
    if path.is_file():
        return read_model(path)
    raise RunSpecError(f"{ref} is neither a shipped model ({', '.join(SHIPPED)}), a model file nor a run folder")


def load_one_model(ref: str | Path, role: str, step: Any = "best") -> TrainedModel:
    """:func:`load_model` where one model is needed (``role`` says for what), not a chain of them.

    Raises
    ------
    InvalidValueError
        If ``ref`` is a chain (a shipped generator of several stages, or one
        drawing around given streets, such as ``buildings-256``: pass its
        model file instead).
    """
    model = load_model(ref, step)
    if not isinstance(model, TrainedModel):
        raise InvalidValueError(f"{ref} is a chain of models; {role} takes one (a run folder or model file)")
    return model
