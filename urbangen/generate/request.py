"""The parameter file of ``urbangen generate``: reading and validating it.

Every error names the file and the field (``parameters.building_coverage``)
and is raised before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_pipeline.errors import ParameterFileError
from data_pipeline.parameters import PARAMETERS
from urbangen.generate.selection import CANDIDATES

OUTPUT_FORMATS = ("png", "geotiff", "geojson", "graphml", "report")
MODEL_TYPES = ("pix2pix", "vae")
#: The model a parameter file without a ``model`` field generates with (see :mod:`urbangen.pretrained`).
DEFAULT_MODEL = "city-64"
FIELD_KINDS = ("gradient", "radial", "zones")
DIRECTIONS = {"east": (1.0, 0.0), "west": (-1.0, 0.0), "north": (0.0, 1.0), "south": (0.0, -1.0)}
TOP_KEYS = ("model", "size_m", "parameters", "streets", "samples", "candidates", "seed", "outputs",
            "georeference", "min_building_area_m2")


def parameter_range(name: str) -> tuple[float, float]:
    """Allowed values of a parameter: fractions in [0, 1], entropy in [0, ln 36], the rest >= 0."""
    unit = PARAMETERS[name][0]
    if unit == "fraction":
        return 0.0, 1.0
    if unit == "nats":
        return 0.0, math.log(36)
    return 0.0, math.inf


@dataclass(frozen=True)
class ParameterField:
    """One requested parameter: a constant, or a field over the layout.

    ``kind`` is ``constant`` (``value``), ``gradient`` (``start`` to ``end``
    along ``direction``), ``radial`` (``centre`` value at ``centre_xy`` in
    metres from the south-west corner, falling linearly to ``edge`` at
    ``radius_m``) or ``zones`` (GeoJSON polygons with a ``property``, and
    ``default`` outside them).
    """

    name: str
    kind: str
    value: float | None = None
    start: float | None = None
    end: float | None = None
    direction: tuple[float, float] = (1.0, 0.0)
    centre: float | None = None
    edge: float | None = None
    centre_xy: tuple[float, float] | None = None
    radius_m: float | None = None
    zones_path: Path | None = None
    property: str = "value"
    default: float | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """A validated parameter file.

    The model is ``pretrained`` (a shipped model's name, the default) or
    ``checkpoint`` (a training run folder or a model file), never both.
    """

    size_m: tuple[float, float]
    parameters: dict[str, ParameterField]
    streets: Path | None = None
    samples: int = 1
    #: Samples a chain draws per tile and stage, keeping the one nearest the request
    #: (:mod:`urbangen.generate.selection`).
    candidates: int = CANDIDATES
    seed: int = 0
    outputs: tuple[str, ...] = OUTPUT_FORMATS
    origin: tuple[float, float] = (0.0, 0.0)
    crs: str = "EPSG:3857"
    checkpoint_step: int | str = "best"
    min_building_area_m2: float = 20.0
    pretrained: str | None = None
    #: A run folder or model file, or several: a chain of stages (streets, then buildings).
    checkpoint: Path | tuple[Path, ...] | None = None
    model_type: str | None = None
    source: str = field(default="<request>", compare=False)

    @property
    def model(self) -> str | Path | tuple[Path, ...]:
        """What :func:`urbangen.pretrained.load_model` loads."""
        return self.pretrained if self.pretrained is not None else self.checkpoint

    @property
    def model_ref(self) -> str:
        """The model as a user would name it: a shipped name or the checkpoint path(s)."""
        model = self.model
        return " + ".join(map(str, model)) if isinstance(model, tuple) else str(model)


class _Reader:
    def __init__(self, source: str, base: Path) -> None:
        self.source, self.base = source, base

    def fail(self, where: str, message: str) -> None:
        raise ParameterFileError(self.source, where, message)

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            self.fail(f"{where}.{unknown[0]}" if where else str(unknown[0]),
                      f"unknown key; expected one of {', '.join(allowed)}")
        for k in required:
            if k not in value:
                self.fail(f"{where}.{k}" if where else k, "is required")
        return value

    def number(self, value: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, f"must be a number, got {value!r}")
        if not math.isfinite(value) or not lo <= value <= hi:
            self.fail(where, f"must be between {lo:g} and {hi:g}, got {value!r}")
        return float(value)

    def integer(self, value: Any, where: str, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, got {value!r}")
        if value < lo:
            self.fail(where, f"must be at least {lo}, got {value}")
        return int(value)

    def pair(self, value: Any, where: str, lo: float = -math.inf) -> tuple[float, float]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = self.number(value, where, lo)
            return v, v
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            self.fail(where, f"must be a number or a list of two numbers, got {value!r}")
        return self.number(value[0], f"{where}[0]", lo), self.number(value[1], f"{where}[1]", lo)

    def path(self, value: Any, where: str, suffixes: tuple[str, ...]) -> Path:
        if not isinstance(value, str) or not value:
            self.fail(where, f"must be a file path, got {value!r}")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.base / path
        if not path.exists():
            self.fail(where, f"{path} does not exist")
        if suffixes and not path.name.lower().endswith(suffixes):
            self.fail(where, f"must be one of {', '.join(suffixes)}, got {path.name}")
        return path

    def parameter(self, name: str, spec: Any) -> ParameterField:
        where = f"parameters.{name}"
        if name not in PARAMETERS:
            self.fail(where, f"unknown parameter; the dataset parameters are {', '.join(PARAMETERS)}")
        lo, hi = parameter_range(name)
        if not isinstance(spec, dict):
            return ParameterField(name, "constant", value=self.number(spec, where, lo, hi))
        if len(spec) != 1 or next(iter(spec)) not in FIELD_KINDS:
            self.fail(where, f"must be a number or one of {{{', '.join(k + ': ...' for k in FIELD_KINDS)}}}")
        kind, body = next(iter(spec.items()))
        w = f"{where}.{kind}"
        if kind == "gradient":
            body = self.mapping(body, w, ("from", "to", "direction"), ("from", "to"))
            direction = body.get("direction", "east")
            if direction not in DIRECTIONS:
                self.fail(f"{w}.direction", f"must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
            return ParameterField(name, kind, start=self.number(body["from"], f"{w}.from", lo, hi),
                                  end=self.number(body["to"], f"{w}.to", lo, hi), direction=DIRECTIONS[direction])
        if kind == "radial":
            body = self.mapping(body, w, ("centre", "edge", "radius_m", "centre_m"), ("centre", "edge", "radius_m"))
            centre_xy = self.pair(body["centre_m"], f"{w}.centre_m") if "centre_m" in body else None
            return ParameterField(name, kind, centre=self.number(body["centre"], f"{w}.centre", lo, hi),
                                  edge=self.number(body["edge"], f"{w}.edge", lo, hi),
                                  radius_m=self.number(body["radius_m"], f"{w}.radius_m", 1e-6), centre_xy=centre_xy)
        body = self.mapping(body, w, ("geojson", "property", "default"), ("geojson", "default"))
        path = self.path(body["geojson"], f"{w}.geojson", (".geojson", ".json"))
        prop = body.get("property", "value")
        self.zones_values(path, prop, f"{w}.geojson", lo, hi)
        return ParameterField(name, kind, zones_path=path, property=prop,
                              default=self.number(body["default"], f"{w}.default", lo, hi))

    def zones_values(self, path: Path, prop: str, where: str, lo: float, hi: float) -> None:
        import geopandas as gpd

        try:
            zones = gpd.read_file(path)
        except Exception as err:  # noqa: BLE001 - any reader failure means the same to the user
            self.fail(where, f"cannot be read as GeoJSON: {err}")
        if prop not in zones.columns:
            self.fail(where, f"has no property {prop!r} (it has {', '.join(map(str, zones.columns))})")
        for i, v in enumerate(zones[prop]):
            self.number(v if not hasattr(v, "item") else v.item(), f"{where} feature {i} {prop}", lo, hi)


def read_request(path: str | Path) -> GenerationRequest:
    """Read and validate a parameter file (YAML). Relative paths in it are relative to the file."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ParameterFileError(source, "", "file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParameterFileError(source, "", f"not valid YAML: {err}") from err
    return parse_request(raw, source=source, base=path.parent)


def parse_request(raw: Any, *, source: str = "<request>", base: Path | None = None) -> GenerationRequest:
    """Validate a parameter mapping (as loaded from YAML)."""
    r = _Reader(source, Path(base or "."))
    raw = r.mapping(raw, "", TOP_KEYS, ("size_m", "parameters"))
    pretrained, checkpoint, model_type, step = _model(r, raw.get("model", DEFAULT_MODEL))
    size = r.pair(raw["size_m"], "size_m", lo=1.0)
    if max(size) > 20_000:
        r.fail("size_m", f"at most 20 km a side, got {size}")
    params = r.mapping(raw["parameters"], "parameters", tuple(raw["parameters"] or {}) if isinstance(
        raw["parameters"], dict) else ())
    fields = {name: r.parameter(name, spec) for name, spec in params.items()}
    streets = r.path(raw["streets"], "streets", (".geojson", ".json", ".graphml")) if raw.get("streets") else None
    outputs = raw.get("outputs", list(OUTPUT_FORMATS))
    if not isinstance(outputs, list) or not outputs:
        r.fail("outputs", f"must be a non-empty list of {', '.join(OUTPUT_FORMATS)}")
    for i, o in enumerate(outputs):
        if o not in OUTPUT_FORMATS:
            r.fail(f"outputs[{i}]", f"unknown format {o!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
    geo = r.mapping(raw.get("georeference", {}), "georeference", ("origin", "crs"))
    origin = r.pair(geo["origin"], "georeference.origin") if "origin" in geo else (0.0, 0.0)
    crs = geo.get("crs", "EPSG:3857")
    try:
        import pyproj

        crs_obj = pyproj.CRS.from_user_input(crs)
    except Exception as err:  # noqa: BLE001
        r.fail("georeference.crs", f"unknown CRS {crs!r}: {err}")
    if not crs_obj.is_projected:
        r.fail("georeference.crs", f"must be a projected (metre) CRS, got {crs!r}")
    return GenerationRequest(
        pretrained=pretrained, checkpoint=checkpoint, model_type=model_type, size_m=size, parameters=fields,
        streets=streets,
        samples=r.integer(raw.get("samples", 1), "samples", lo=1),
        candidates=r.integer(raw.get("candidates", CANDIDATES), "candidates", lo=1),
        seed=r.integer(raw.get("seed", 0), "seed"),
        outputs=tuple(dict.fromkeys(outputs)), origin=origin, crs=str(crs), checkpoint_step=step,
        min_building_area_m2=r.number(raw.get("min_building_area_m2", 20.0), "min_building_area_m2", 0.0),
        source=source)


def _model(r: _Reader, raw: Any) -> tuple[str | None, Path | tuple[Path, ...] | None, str | None, int | str]:
    """The ``model`` field: a shipped model's name, or ``{checkpoint, step, type}`` for one's own."""
    from urbangen.pretrained import SHIPPED

    if isinstance(raw, str):
        if raw not in SHIPPED:
            r.fail("model", f"{raw!r} is not a shipped model ({', '.join(SHIPPED)}); for a model of your own "
                   "give {checkpoint: RUN_FOLDER_OR_MODEL_FILE}")
        return raw, None, None, "best"
    model = r.mapping(raw, "model", ("checkpoint", "type", "step"), ("checkpoint",))
    model_type = model.get("type")
    if model_type is not None and model_type not in MODEL_TYPES:
        r.fail("model.type", f"must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    many = isinstance(model["checkpoint"], list)
    paths = model["checkpoint"] if many else [model["checkpoint"]]
    if not paths:
        r.fail("model.checkpoint", "an empty list: give one run folder or model file, or the stages of a chain")
    checkpoints = []
    for i, value in enumerate(paths):
        where = f"model.checkpoint[{i}]" if many else "model.checkpoint"
        checkpoint = r.path(value, where, ())
        if not ((checkpoint / "checkpoints").is_dir() or checkpoint.is_file()):
            r.fail(where, f"{checkpoint} is neither a training run directory (with checkpoints/ in it) "
                   "nor a model file")
        checkpoints.append(checkpoint)
    step = model.get("step", "best")
    if step not in ("best", "latest") and (isinstance(step, bool) or not isinstance(step, int)):
        r.fail("model.step", f"must be best, latest or a step number, got {step!r}")
    return None, tuple(checkpoints) if many else checkpoints[0], model_type, step
