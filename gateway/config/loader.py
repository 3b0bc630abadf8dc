"""Read `portcullis.yaml`: YAML, `${ENV}` interpolation, validation with line numbers.

A bad file stops start-up with one message per problem, each naming the file,
the line where it can be found and the dotted path of the field.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.models import GatewayConfig
from gateway.outcomes import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Location = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load and validate a deployment config; raise `ConfigError` listing every problem."""
    path = Path(path).resolve()
    return load_model(path, GatewayConfig, environ, {"root": str(path.parent), "file": str(path)})


def load_model(
    path: Path | str, model: type[M], environ: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
) -> M:
    """A YAML file validated as `model`, with `${ENV}` interpolation and file:line in every problem."""
    path = Path(path).resolve()
    # ${PORTCULLIS_PYTHON} names the interpreter running the gateway, for Python upstreams.
    env = {"PORTCULLIS_PYTHON": sys.executable, **(os.environ if environ is None else environ)}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from exc
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
    problems: list[str] = []
    data = _interpolate(raw, (), env, problems, path, lines)
    if problems:
        raise ConfigError(problems)
    data.update(extra or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, path, lines) for err in exc.errors()]) from exc


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


def _describe(error: Any, path: Path, lines: dict[Location, int]) -> str:
    loc: Location = tuple(error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    return f"{_where(path, lines, loc)}: {_dotted(loc)}: {message}"
