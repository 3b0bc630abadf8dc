"""Read `portcullis.yaml`: YAML, `${ENV}` interpolation, validation with line numbers.

A bad file stops start-up with one message per problem, each naming the file,
the line where it can be found and the dotted path of the field; an unknown key
comes with the known one it is closest to. A model whose checks reach across its
fields (a detector name the file's own plugins may define) gives them as
`CrossChecked.cross_check`, and they are located the same way.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar, Union, get_args, get_origin, runtime_checkable

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.models import GatewayConfig
from gateway.outcomes import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Location = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@runtime_checkable
class CrossChecked(Protocol):
    """A model with checks no single field can make; the loader reports each problem with its file and line."""

    def cross_check(self) -> list[tuple[Location, str]]:
        """(where in the file, what is wrong) for every problem; empty when there is none."""
        ...


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load and validate a deployment config; raise `ConfigError` listing every problem."""
    path = Path(path).resolve()
    return load_model(path, GatewayConfig, environ, {"root": str(path.parent), "file": str(path)})


def load_model(
    path: Path | str,
    model: type[M],
    environ: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> M:
    """A YAML file validated as `model`, with `${ENV}` interpolation and file:line in every problem.

    `key` is the `portcullis.yaml` setting that names the file (`guardrails`): a missing file says so.
    """
    path = Path(path).resolve()
    # ${PORTCULLIS_PYTHON} names the interpreter running the gateway, for Python upstreams.
    env = {"PORTCULLIS_PYTHON": sys.executable, **(os.environ if environ is None else environ)}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        problem = f"{key}: file not found: {path}" if key else f"{path}: cannot read config: {exc.strerror or exc}"
        raise ConfigError([problem]) from exc
    except OSError as exc:
        where = f"{key}: {path}" if key else str(path)
        raise ConfigError([f"{where}: cannot read config: {exc.strerror or exc}"]) from exc
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}:1: the config must be a mapping of settings"])
    lines = _line_map(node) if node is not None else {}
    problems: list[str] = [
        f"{_where(path, lines, loc)}: {_dotted(loc)}: {message}" for loc, message in _clear_secrets(raw, model)
    ]
    data = _interpolate(raw, (), env, problems, path, lines)
    if problems:
        raise ConfigError(problems)
    data.update(extra or {})
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, path, lines, model) for err in exc.errors()]) from exc
    if isinstance(loaded, CrossChecked):
        crossed = [f"{_where(path, lines, loc)}: {_dotted(loc)}: {message}" for loc, message in loaded.cross_check()]
        if crossed:
            raise ConfigError(crossed)
    return loaded


ENV_ONLY: dict[type[BaseModel], tuple[Location, ...]] = {GatewayConfig: (("store", "dsn"),)}
"""Settings that may hold a password and so must come from the environment, per model."""


def _clear_secrets(raw: Mapping[str, Any], model: type[BaseModel]) -> list[tuple[Location, str]]:
    """A DSN written with its password in the file (before interpolation), which would leak with the file."""
    found: list[tuple[Location, str]] = []
    for loc in ENV_ONLY.get(model, ()):
        value: Any = raw
        for part in loc:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and not _ENV_REF.search(value) and _has_password(value):
            found.append((loc, "holds a password in clear: write ${PORTCULLIS_DATABASE_URL} and set the variable"))
    return found


def _has_password(dsn: str) -> bool:
    if "://" in dsn:
        credentials = dsn.split("://", 1)[1].split("@", 1)
        return (len(credentials) == 2 and ":" in credentials[0]) or "password=" in dsn
    return re.search(r"(^|\s)password\s*=", dsn) is not None


def locate(path: Path, loc: Location) -> str:
    """`FILE:LINE` of a setting in a YAML file (the file alone when it cannot be read), for a problem found later."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return str(path)
    return _where(path, _line_map(node) if node is not None else {}, loc)


def _interpolate(
    value: Any, loc: Location, env: Mapping[str, str], problems: list[str], path: Path, lines: dict[Location, int]
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), env, problems, path, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, problems, path, lines) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{_where(path, lines, loc)}: {_dotted(loc)}: environment variable {name} is not set")
        return ""

    return _ENV_REF.sub(substitute, value)


def _line_map(node: yaml.Node, loc: Location = ()) -> dict[Location, int]:
    lines: dict[Location, int] = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, key_node.value)
            lines.update(_line_map(value_node, key))
            lines[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_map(item, (*loc, index)))
    return lines


def _where(path: Path, lines: dict[Location, int], loc: Location) -> str:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return f"{path}:{lines[loc[:end]]}"
    return str(path)


def _dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe(error: Any, path: Path, lines: dict[Location, int], model: type[BaseModel]) -> str:
    loc: Location = tuple(error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown setting" + did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]))
    return f"{_where(path, lines, loc)}: {_dotted(loc)}: {message}"


def did_you_mean(name: str, known: list[str] | set[str] | tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` for the known name closest to a misspelt one; empty when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: Location) -> list[str]:
    """The field names of the model found at `loc` inside `model` (empty when it is not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if _is_model(current) and isinstance(part, str):
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else None
        else:
            current = _item(current)
        if current is None:
            return []
    current = _unwrap(current)
    return list(current.model_fields) if _is_model(current) else []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> `X` (the first member that is a model or a container)."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return annotation
    members = [a for a in get_args(annotation) if _is_model(a) or get_origin(a) is not None]
    return members[0] if members else None


def _item(annotation: Any) -> Any:
    """What a container annotation holds: a list's or tuple's items, a dict's values."""
    args = [a for a in get_args(annotation) if a is not Ellipsis]
    origin = get_origin(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)
