"""Python tools: functions in the deployment's `tools/` folder, loaded by path.

A tool module is any `tools/*.py` not starting with `_`; its namespace is its
`NAMESPACE` variable or its file name. Functions marked with `@tool` become
`namespace.function`. The input schema is derived from the type hints by
pydantic, and the output schema from the return annotation when it is one.

The folder is imported as a private package (not put on `sys.path`), so a
module named `email.py` does not shadow the standard library, and helper
modules (`_acme.py`) can be imported relatively.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, get_type_hints

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from gateway.canonical import canonical_json
from gateway.outcomes import ToolLoadError
from gateway.tool_api import TOOL_MARK, ToolContext, ToolSpec, tool
from gateway.tool_types import SourceHealth, ToolDefinition, ToolResult

__all__ = ["PythonToolSource", "ToolSpec", "tool"]


@dataclass(frozen=True)
class _PythonTool:
    definition: ToolDefinition
    function: Callable[..., Any]
    arguments_model: type[BaseModel]
    context_parameter: str | None
    output: TypeAdapter[Any] | None
    wrap_output: bool


class PythonToolSource:
    """All tool modules of one folder."""

    def __init__(self, folder: Path, settings: dict[str, Any], root: Path) -> None:
        self.name = f"python:{folder.name}"
        self.folder = folder
        self.settings = settings
        self.root = root
        self._tools: dict[str, _PythonTool] = {}
        for module in _import_folder(folder):
            namespace = getattr(module, "NAMESPACE", module.__name__.rsplit(".", 1)[-1])
            for attribute in vars(module).values():
                spec = getattr(attribute, TOOL_MARK, None)
                if isinstance(spec, ToolSpec) and getattr(attribute, "__module__", None) == module.__name__:
                    built = _describe(namespace, attribute, spec, self.name, module.__file__ or "")
                    if built.definition.name in self._tools:
                        raise ToolLoadError([f"{module.__file__}: tool {built.definition.name} is defined twice"])
                    self._tools[built.definition.name] = built

    kind = "python"

    def list_tools(self) -> list[ToolDefinition]:
        return [built.definition for built in self._tools.values()]

    async def start(self, tasks: TaskGroup) -> None:
        """Python tools are imported when the source is built; nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""

    def health(self) -> SourceHealth:
        return SourceHealth(source=self.name, kind=self.kind, status="ok", tools=len(self._tools))

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        built = self._tools[tool.name]
        validated = built.arguments_model.model_validate(arguments)
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if built.context_parameter:
            kwargs[built.context_parameter] = replace(context, settings=self.settings, root=self.root)
        if inspect.iscoroutinefunction(built.function):
            value = await built.function(**kwargs)
        else:
            # abandon_on_cancel: a timed-out sync tool cannot be stopped, but the caller is not kept waiting.
            value = await anyio.to_thread.run_sync(lambda: built.function(**kwargs), abandon_on_cancel=True)
        return _to_result(value, built)


def _import_folder(folder: Path) -> list[ModuleType]:
    if not folder.is_dir():
        raise ToolLoadError([f"{folder}: tool folder does not exist"])
    package = f"_portcullis_tools_{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}"
    if package not in sys.modules:
        module = ModuleType(package)
        module.__path__ = [str(folder.resolve())]
        sys.modules[package] = module
    modules = []
    problems = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            modules.append(importlib.import_module(f"{package}.{path.stem}"))
        except Exception as exc:  # seam: a tool module can raise anything on import
            problems.append(f"{path}: cannot import tool module: {type(exc).__name__}: {exc}")
    if problems:
        raise ToolLoadError(problems)
    return modules


def _describe(namespace: str, function: Callable[..., Any], spec: ToolSpec, source: str, file: str) -> _PythonTool:
    name = f"{namespace}.{spec.name or function.__name__}"
    try:
        hints = get_type_hints(function, include_extras=True)  # keep Annotated[..., Field(...)] metadata
    except Exception as exc:  # seam: unresolvable annotations raise NameError and others
        raise ToolLoadError([f"{file}: tool {name}: cannot resolve type hints: {exc}"]) from exc
    fields: dict[str, Any] = {}
    context_parameter = None
    for parameter in inspect.signature(function).parameters.values():
        annotation = hints.get(parameter.name, Any)
        if annotation is ToolContext:
            context_parameter = parameter.name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolLoadError([f"{file}: tool {name}: *args and **kwargs are not supported"])
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model = create_model(f"{name}.arguments", __config__=ConfigDict(extra="forbid"), **fields)
    input_schema = model.model_json_schema()
    input_schema.pop("title", None)
    output, wrap, output_schema = _output_schema(hints.get("return"))
    doc = inspect.getdoc(function) or ""
    definition = ToolDefinition(
        name=name,
        title=spec.title,
        description=spec.description or doc,
        input_schema=input_schema,
        output_schema=output_schema,
        annotations={
            "readOnlyHint": spec.read_only,
            "destructiveHint": spec.destructive and not spec.read_only,
            "idempotentHint": spec.idempotent or spec.read_only,
            "openWorldHint": spec.open_world,
        },
        source=source,
        timeout_seconds=spec.timeout_seconds,
    )
    return _PythonTool(definition, function, model, context_parameter, output, wrap)


def _output_schema(annotation: Any) -> tuple[TypeAdapter[Any] | None, bool, dict[str, Any] | None]:
    if annotation is None or annotation is Any or annotation is str or annotation is type(None):
        return None, False, None
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    schema = adapter.json_schema()
    if schema.get("type") == "object":
        schema.pop("title", None)
        return adapter, False, schema
    wrapped = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    if "$defs" in schema:
        wrapped["$defs"] = schema.pop("$defs")
    return adapter, True, wrapped


def _to_result(value: Any, built: _PythonTool) -> ToolResult:
    if built.output is not None:
        try:
            plain = built.output.dump_python(value, mode="json")
        except (ValidationError, TypeError, ValueError) as exc:
            raise TypeError(f"tool returned a value that does not match its return type: {exc}") from exc
        structured = {"result": plain} if built.wrap_output else plain
        return ToolResult(content=[{"type": "text", "text": canonical_json(plain)}], structured=structured)
    if value is None:
        return ToolResult()
    if isinstance(value, str):
        return ToolResult(content=[{"type": "text", "text": value}])
    plain = TypeAdapter(Any).dump_python(value, mode="json")
    return ToolResult(content=[{"type": "text", "text": canonical_json(plain)}])
