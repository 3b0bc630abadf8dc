"""Turn an OpenAPI 3 document into HTTP tool definitions (one per operation).

The output is plain config (the `http_tools:` list of a tool file) for an
operator to review and commit: nothing is fetched or trusted at run time.
Covers path, query and header parameters and JSON request bodies; local
`$ref`s are inlined.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config import HttpToolConfig

METHODS = ("get", "post", "put", "patch", "delete")
MAX_REF_DEPTH = 32


def import_openapi(document: Path, namespace: str, base_url: str | None = None) -> list[dict[str, Any]]:
    """The `http_tools:` entries for every operation of `document`; ValueError if it is not usable."""
    try:
        text = document.read_text(encoding="utf-8")
        spec = json.loads(text) if document.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{document}: cannot read OpenAPI document: {exc}") from exc
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3."):
        raise ValueError(f"{document}: not an OpenAPI 3 document (no 'openapi: 3.x' field)")
    servers = spec.get("servers") or []
    url = (base_url or (servers[0].get("url") if servers else "") or "").rstrip("/")
    if not re.match(r"^https?://", url):
        raise ValueError(f"{document}: no absolute server URL; pass --base-url")
    tools: list[dict[str, Any]] = []
    for path, item in (spec.get("paths") or {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            operation = item.get(method)
            if operation is not None:
                tools.append(_tool(spec, namespace, url, path, method, operation, shared))
    for tool in tools:
        HttpToolConfig.model_validate(tool)  # what we write must load
    return tools


def _tool(
    spec: dict[str, Any],
    namespace: str,
    base: str,
    path: str,
    method: str,
    operation: dict[str, Any],
    shared: list[dict[str, Any]],
) -> dict[str, Any]:
    operation_id = operation.get("operationId") or f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}"
    name = f"{namespace}.{re.sub(r'[^A-Za-z0-9_.-]', '_', operation_id)}"
    properties: dict[str, Any] = {}
    required: list[str] = []
    locations: dict[str, str] = {}
    for parameter in [*shared, *operation.get("parameters", [])]:
        parameter = _resolve(spec, parameter)
        where = parameter.get("in")
        if where not in ("path", "query", "header"):
            continue
        properties[parameter["name"]] = _resolve(spec, parameter.get("schema", {"type": "string"}))
        if parameter.get("description"):
            properties[parameter["name"]] = {**properties[parameter["name"]], "description": parameter["description"]}
        locations[parameter["name"]] = where
        if parameter.get("required") or where == "path":
            required.append(parameter["name"])
    body_argument = None
    body = _resolve(spec, operation.get("requestBody", {}))
    schema = _resolve(spec, body.get("content", {}).get("application/json", {}).get("schema", {}))
    if schema:
        if schema.get("type") == "object" and schema.get("properties"):
            for key, value in schema["properties"].items():
                if key in properties:
                    raise ValueError(f"{name}: body property {key!r} clashes with a parameter of the same name")
                properties[key] = value
                locations[key] = "body"
            required.extend(k for k in schema.get("required", []) if k in schema["properties"])
        else:
            properties["body"] = schema
            body_argument = "body"
            if body.get("required"):
                required.append("body")
    input_schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        input_schema["required"] = sorted(set(required))
    description = "\n\n".join(p for p in (operation.get("summary"), operation.get("description")) if p)
    tool: dict[str, Any] = {
        "name": name,
        "description": description or f"{method.upper()} {path}",
        "method": method.upper(),
        "url": base + path,
        "input_schema": input_schema,
        "parameters": locations,
        "annotations": {
            "readOnlyHint": method == "get",
            "destructiveHint": method == "delete",
            "idempotentHint": method in ("get", "put", "delete"),
            "openWorldHint": True,
        },
    }
    if body_argument:
        tool["body_argument"] = body_argument
    return tool


def _resolve(spec: dict[str, Any], value: Any, depth: int = 0) -> Any:
    """Inline local `$ref`s (`#/components/...`), recursively, to a bounded depth."""
    if depth > MAX_REF_DEPTH:
        raise ValueError("OpenAPI $ref chain too deep (recursive schema?)")
    if isinstance(value, dict):
        if "$ref" in value:
            ref = value["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise ValueError(f"only local $refs are supported, not {ref!r}")
            target: Any = spec
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _resolve(spec, target, depth + 1)
        return {k: _resolve(spec, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(spec, v, depth + 1) for v in value]
    return value
