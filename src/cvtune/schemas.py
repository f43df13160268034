"""Typed, validated views of the files cvtune reads (pydantic v2): deploy.json, COCO annotation files, an optimize
folder's metadata. Each is parsed once at the edge; any problem is one error line naming the file, the field and
what was expected. `json_schema(kind)` gives the versioned JSON Schema of the documents cvtune writes and reads
(`cvtune schema deploy`).
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from .errors import UsageError
from .files import SCHEMA_VERSIONS, display_path, schema_id

__all__ = ["CocoFile", "DeployFile", "PreprocessingSpec", "RunMeta", "SCHEMAS", "json_schema", "parse"]

PositiveInt = Annotated[StrictInt, Field(ge=1)]
Id = StrictInt | StrictStr  # COCO ids: integers in COCO itself, strings in some exports


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class _Doc(BaseModel):
    """Common settings: unknown fields are kept (a newer cvtune may add some), known ones are checked strictly."""

    model_config = ConfigDict(extra="allow", frozen=True)


class PreprocessingSpec(_Doc):
    """How images become the model's input tensor (zoo.Preprocessing.to_dict())."""

    input_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    size_multiple: PositiveInt = 1
    scale: float = 1 / 255
    mean: Annotated[list[float], Field(min_length=1, max_length=4)] = [0.0, 0.0, 0.0]
    std: Annotated[list[float], Field(min_length=1, max_length=4)] = [1.0, 1.0, 1.0]
    rgb: StrictBool = False
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        return _finite(value)

    @field_validator("std")
    @classmethod
    def _std(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(v) or v == 0 for v in value):
            raise ValueError("every std must be a finite non-zero number")
        return value


class DeployFile(_Doc):
    """deploy.json: how to run an optimized model. Only `model` and `runtime` are required."""

    schema_: StrictStr | None = Field(None, alias="schema", description="cvtune-deploy/N")
    version: StrictStr | None = Field(None, description="the cvtune that wrote it")
    model: Annotated[StrictStr, Field(min_length=1)] = Field(description="model file, relative to the deploy.json "
                                                             "folder (and inside it)")
    runtime: dict[str, Any] = Field(description="Runtime.to_dict(): {'runtime': 'ort', 'threads': 2, ...}")
    task: StrictStr | None = None
    task_options: dict[str, Any] = {}
    input_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    batch: PositiveInt = 1
    instances: PositiveInt = 1
    preprocessing: PreprocessingSpec | StrictStr | None = None  # an object, or a --preprocess spec string
    expected: dict[str, Any] = {}

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is None:
            return value
        kind, _, number = value.partition("/")
        if kind != "cvtune-deploy" or not number.isdigit():
            raise ValueError(f"expected '{schema_id('deploy')}'")
        if int(number) > SCHEMA_VERSIONS["deploy"]:
            raise ValueError(f"this cvtune reads up to {schema_id('deploy')}; upgrade cvtune to read {value}")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if os.path.isabs(value) or value.startswith(("/", "\\")):
            raise ValueError("must be a path relative to the deploy.json folder, not an absolute one")
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError("must stay inside the deploy.json folder (no '..')")
        return value

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("runtime"), str):
            raise ValueError("needs a 'runtime' name, e.g. {\"runtime\": \"ort\", \"threads\": 2}")
        return value


class CocoImage(_Doc):
    id: Id
    file_name: Annotated[StrictStr, Field(min_length=1)]


class CocoCategory(_Doc):
    id: Id
    name: StrictStr


class CocoAnnotation(_Doc):
    image_id: Id
    category_id: Id
    bbox: Annotated[list[float], Field(min_length=4, max_length=4)]

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(v) for v in value) or value[2] < 0 or value[3] < 0:
            raise ValueError("must be [x, y, width, height] with finite numbers and width, height >= 0")
        return value


class CocoFile(_Doc):
    """A COCO detection annotation file (the parts cvtune reads)."""

    images: list[CocoImage]
    annotations: list[CocoAnnotation] = []
    categories: list[CocoCategory] = []

    @field_validator("categories")
    @classmethod
    def _one_id_type(cls, value: list[CocoCategory]) -> list[CocoCategory]:
        if len({type(c.id) for c in value}) > 1:
            raise ValueError("category ids mix integers and strings; use one kind for all of them")
        return value


class RunMeta(BaseModel):
    """What `cvtune report` reads from an optimize folder's store (meta table)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    config: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    facts: dict[str, Any] = {}
    machine: dict[str, Any] = {}


SCHEMAS: dict[str, type[BaseModel]] = {"deploy": DeployFile, "coco": CocoFile}


def describe_error(exc: ValidationError) -> str:
    """The first problem of a ValidationError as 'field.path: what was expected (got value)', plus a count."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"]) or "the document"
    got = first.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{loc}: {message} (got {shown}){more}"


def parse(model: type[BaseModel], data: Any, *, source: str | os.PathLike[str], error=UsageError) -> Any:
    """Validate `data` (already parsed JSON) as `model`; one `error` line naming `source` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{display_path(source)}: {describe_error(exc)}") from None


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a document cvtune reads or writes, with its `$id` naming the version."""
    if kind not in SCHEMAS:
        raise UsageError(f"unknown schema '{kind}'; choose one of: {', '.join(SCHEMAS)}")
    schema = SCHEMAS[kind].model_json_schema(by_alias=True)
    version = SCHEMA_VERSIONS.get(kind)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": schema_id(kind) if version else f"cvtune-{kind}", **schema}
