"""The parameter file of ``urbangen generate``: reading and validating it.

The file's shape is a set of pydantic models (``_File``; a parameter's value
is a discriminated union of a constant and the field kinds, told apart by the
mapping's one key); what only the file system, a CRS database or the
parameter's own range can tell is checked after. Every error names the file
and the field (``parameters.building_coverage.gradient.direction``) and is
raised before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
import yaml
from pydantic_core import PydanticCustomError

from data_pipeline.errors import ParameterFileError
from data_pipeline.parameters import PARAMETERS
from urbangen.generate.selection import CANDIDATES, TARGET_SCATTER

OutputFormat = Literal["png", "geotiff", "geojson", "graphml", "report"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
MODEL_TYPES = ("pix2pix", "vae")
#: The model a parameter file without a ``model`` field generates with (see :mod:`urbangen.pretrained`).
DEFAULT_MODEL = "city-64"
FIELD_KINDS = ("gradient", "radial", "zones")
DIRECTIONS = {"east": (1.0, 0.0), "west": (-1.0, 0.0), "north": (0.0, 1.0), "south": (0.0, -1.0)}


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
    #: The share of a real tile's scatter about the selection's target that each tile's target takes.
    target_scatter: float | None = TARGET_SCATTER
    #: Whether a chain's compact, house-sized footprints are redrawn as rectangles (:mod:`urbangen.footprints`);
    #: None (no ``footprints`` in the file): as the chain is set (a shipped one redraws).
    rectangular_footprints: bool | None = None
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
        if self.pretrained is not None:
            return self.pretrained
        if self.checkpoint is None:
            raise ParameterFileError(self.source, "model", "names no model: give a shipped model or model.checkpoint")
        return self.checkpoint

    @property
    def model_ref(self) -> str:
        """The model as a user would name it: a shipped name or the checkpoint path(s)."""
        model = self.model
        return " + ".join(map(str, model)) if isinstance(model, tuple) else str(model)


PositiveInt = Annotated[int, pydantic.Field(strict=True, ge=1)]
Number = Annotated[float, pydantic.Field(strict=True, allow_inf_nan=False)]


def _pair(value: Any) -> Any:
    """One number or two: a number stands for both."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(value)
    raise PydanticCustomError("pair", "must be a number or a list of two numbers, got {value}", {"value": repr(value)})


Pair = Annotated[tuple[Number, Number], pydantic.BeforeValidator(_pair)]
Side = Annotated[float, pydantic.Field(strict=True, ge=1.0, allow_inf_nan=False)]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)


class _Gradient(_Strict):
    start: Number = pydantic.Field(alias="from")
    to: Number
    direction: Literal["east", "west", "north", "south"] = "east"


class _Radial(_Strict):
    centre: Number
    edge: Number
    radius_m: Annotated[float, pydantic.Field(strict=True, gt=0, allow_inf_nan=False)]
    centre_m: Pair | None = None


class _Zones(_Strict):
    geojson: str
    property: str = "value"
    default: Number


class _GradientField(_Strict):
    gradient: _Gradient


class _RadialField(_Strict):
    radial: _Radial


class _ZonesField(_Strict):
    zones: _Zones


def _field_kind(value: Any) -> str | None:
    """The tag of a parameter's value: a number is a constant, a mapping names its one field kind."""
    if not isinstance(value, dict):
        return "kind:constant"
    return f"kind:{next(iter(value))}" if len(value) == 1 and next(iter(value)) in FIELD_KINDS else None


FIELD_KIND_ERROR = f"must be a number or one of {{{', '.join(k + ': ...' for k in FIELD_KINDS)}}}"
#: A parameter's value: a constant or one of the field kinds, told apart by the mapping's one key.
FieldSpec = Annotated[
    Annotated[Number, pydantic.Tag("kind:constant")] | Annotated[_GradientField, pydantic.Tag("kind:gradient")]
    | Annotated[_RadialField, pydantic.Tag("kind:radial")] | Annotated[_ZonesField, pydantic.Tag("kind:zones")],
    pydantic.Discriminator(_field_kind, custom_error_type="field_kind", custom_error_message=FIELD_KIND_ERROR)]


class _Model(_Strict):
    checkpoint: Any  # one path or a list of them: checked with the file system, after
    type: Literal["pix2pix", "vae"] | None = None
    step: Any = "best"  # best, latest or a step number: checked after, with one message for all three


class _Georeference(_Strict):
    origin: Pair = (0.0, 0.0)
    crs: str = "EPSG:3857"


#: Number fields bounded on both sides: either bound reads "between".
_RANGES = {"target_scatter": (0.0, 1.0)}


class _File(_Strict):
    """A parameter file as written; what only a file system or a model can tell is checked after."""

    model: Annotated[Annotated[str, pydantic.Tag("shipped")] | Annotated[_Model, pydantic.Tag("own")],
                     pydantic.Discriminator(lambda v: "shipped" if isinstance(v, str) else "own")] = DEFAULT_MODEL
    size_m: Annotated[tuple[Side, Side], pydantic.BeforeValidator(_pair)]
    parameters: dict[str, FieldSpec]
    streets: str | None = None
    samples: PositiveInt = 1
    candidates: PositiveInt = CANDIDATES
    target_scatter: Annotated[float, pydantic.Field(ge=_RANGES["target_scatter"][0], le=_RANGES["target_scatter"][1],
                                                    allow_inf_nan=False)] | None = TARGET_SCATTER
    footprints: Literal["rectangles", "as_drawn"] | None = None
    seed: Annotated[int, pydantic.Field(strict=True, ge=0)] = 0
    outputs: list[OutputFormat] = pydantic.Field(default=list(OUTPUT_FORMATS), min_length=1)
    georeference: _Georeference = _Georeference()
    min_building_area_m2: Annotated[float, pydantic.Field(strict=True, ge=0, allow_inf_nan=False)] = 20.0


#: Where an unknown key was found (the nearest named mapping above it) -> the model whose keys are allowed there.
_MAPPINGS: dict[str, type[pydantic.BaseModel]] = {"model": _Model, "georeference": _Georeference,
                                                  "gradient": _Gradient, "radial": _Radial, "zones": _Zones}
#: Integer fields: their lower bound reads "at least", a number's "between".
_INTEGERS = ("samples", "candidates", "seed")


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic location as the file's path to the field: ``parameters.x.gradient.direction``, ``size_m[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part.startswith("kind:") or part in ("shipped", "own")):  # union tags, not keys of the file
            out += f".{part}" if out else part
    return out


def _message(error: Any, where: str) -> str:
    """One pydantic error in the words of this reader."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        names = [p for p in where.split(".")[:-1] if not p.endswith("]")]
        model = _MAPPINGS.get(names[-1], _File) if names else _File
        allowed = [f.alias or name for name, f in model.model_fields.items()]
        return f"unknown key; expected one of {', '.join(allowed)}"
    if kind == "missing":
        return "is required"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number, got {value!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal") and where in _RANGES:
        return f"must be between {_RANGES[where][0]:g} and {_RANGES[where][1]:g}, got {value!r}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        if where in _INTEGERS:
            return f"must be at least {bound}, got {value!r}"
        if kind == "greater_than":
            return f"must be above {bound:g}, got {value!r}"
        return f"must be between {bound:g} and inf, got {value!r}"
    if kind == "literal_error":
        if where.startswith("outputs["):
            return f"unknown format {value!r}; expected one of {', '.join(OUTPUT_FORMATS)}"
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {type(value).__name__}"
    if kind == "too_short":
        return f"must be a non-empty list, got {value!r}"
    if kind == "list_type":
        return f"must be a list, got {value!r}"
    if kind == "string_type":
        return f"must be a string, got {value!r}"
    return error["msg"]


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
    if not isinstance(raw, dict):
        raise ParameterFileError(source, "", f"must be a mapping, got {type(raw).__name__}")
    try:
        f = _File.model_validate(raw)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = _where(first["loc"])
        raise ParameterFileError(source, where, _message(first, where)) from None
    check = _Checks(source, Path(base or "."))
    pretrained, checkpoint, model_type, step = check.model(f.model)
    if max(f.size_m) > 20_000:
        check.fail("size_m", f"at most 20 km a side, got {f.size_m}")
    fields = {name: check.parameter(name, spec) for name, spec in f.parameters.items()}
    streets = check.path(f.streets, "streets", (".geojson", ".json", ".graphml")) if f.streets else None
    check.crs(f.georeference.crs)
    return GenerationRequest(
        pretrained=pretrained, checkpoint=checkpoint, model_type=model_type, size_m=f.size_m, parameters=fields,
        streets=streets, samples=f.samples, candidates=f.candidates, target_scatter=f.target_scatter,
        rectangular_footprints=None if f.footprints is None else f.footprints == "rectangles", seed=f.seed,
        outputs=tuple(dict.fromkeys(f.outputs)), origin=f.georeference.origin, crs=f.georeference.crs,
        checkpoint_step=step, min_building_area_m2=f.min_building_area_m2, source=source)


class _Checks:
    """What the file's shape cannot tell: files that must exist, a CRS, parameter names and their ranges."""

    def __init__(self, source: str, base: Path) -> None:
        self.source, self.base = source, base

    def fail(self, where: str, message: str) -> None:
        raise ParameterFileError(self.source, where, message)

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

    def within(self, value: float, where: str, lo: float, hi: float) -> float:
        if not lo <= value <= hi:
            self.fail(where, f"must be between {lo:g} and {hi:g}, got {value!r}")
        return float(value)

    def crs(self, crs: str) -> None:
        import pyproj

        try:
            crs_obj = pyproj.CRS.from_user_input(crs)
        except Exception as err:  # noqa: BLE001 - any pyproj failure means the same to the user
            self.fail("georeference.crs", f"unknown CRS {crs!r}: {err}")
        if not crs_obj.is_projected:
            self.fail("georeference.crs", f"must be a projected (metre) CRS, got {crs!r}")

    def model(self, model: str | _Model) -> tuple[str | None, Path | tuple[Path, ...] | None, str | None, int | str]:
        """The ``model`` field: a shipped model's name, or ``{checkpoint, step, type}`` for one's own."""
        from urbangen.pretrained import SHIPPED

        if isinstance(model, str):
            if model not in SHIPPED:
                self.fail("model", f"{model!r} is not a shipped model ({', '.join(SHIPPED)}); for a model of your "
                          "own give {checkpoint: RUN_FOLDER_OR_MODEL_FILE}")
            return model, None, None, "best"
        many = isinstance(model.checkpoint, list)
        paths = model.checkpoint if many else [model.checkpoint]
        if not paths:
            self.fail("model.checkpoint", "an empty list: give one run folder or model file, or the stages of a chain")
        checkpoints = []
        for i, value in enumerate(paths):
            where = f"model.checkpoint[{i}]" if many else "model.checkpoint"
            checkpoint = self.path(value, where, ())
            if not ((checkpoint / "checkpoints").is_dir() or checkpoint.is_file()):
                self.fail(where, f"{checkpoint} is neither a training run directory (with checkpoints/ in it) "
                          "nor a model file")
            checkpoints.append(checkpoint)
        step = model.step
        if step not in ("best", "latest") and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            self.fail("model.step", f"must be best, latest or a step number, got {step!r}")
        return None, tuple(checkpoints) if many else checkpoints[0], model.type, step

    def parameter(self, name: str, spec: Any) -> ParameterField:
        where = f"parameters.{name}"
        if name not in PARAMETERS:
            self.fail(where, f"unknown parameter; the dataset parameters are {', '.join(PARAMETERS)}")
        lo, hi = parameter_range(name)
        if isinstance(spec, float):
            return ParameterField(name, "constant", value=self.within(spec, where, lo, hi))
        if isinstance(spec, _GradientField):
            g, w = spec.gradient, f"{where}.gradient"
            return ParameterField(name, "gradient", start=self.within(g.start, f"{w}.from", lo, hi),
                                  end=self.within(g.to, f"{w}.to", lo, hi), direction=DIRECTIONS[g.direction])
        if isinstance(spec, _RadialField):
            r, w = spec.radial, f"{where}.radial"
            return ParameterField(name, "radial", centre=self.within(r.centre, f"{w}.centre", lo, hi),
                                  edge=self.within(r.edge, f"{w}.edge", lo, hi), radius_m=r.radius_m,
                                  centre_xy=r.centre_m)
        z, w = spec.zones, f"{where}.zones"
        path = self.path(z.geojson, f"{w}.geojson", (".geojson", ".json"))
        self.zones_values(path, z.property, f"{w}.geojson", lo, hi)
        return ParameterField(name, "zones", zones_path=path, property=z.property,
                              default=self.within(z.default, f"{w}.default", lo, hi))

    def zones_values(self, path: Path, prop: str, where: str, lo: float, hi: float) -> None:
        import geopandas as gpd

        try:
            zones = gpd.read_file(path)
        except Exception as err:  # noqa: BLE001 - any reader failure means the same to the user
            self.fail(where, f"cannot be read as GeoJSON: {err}")
        if prop not in zones.columns:
            self.fail(where, f"has no property {prop!r} (it has {', '.join(map(str, zones.columns))})")
        for i, v in enumerate(zones[prop]):
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(f"{where} feature {i} {prop}", f"must be a number, got {v!r}")
            self.within(v, f"{where} feature {i} {prop}", lo, hi)
