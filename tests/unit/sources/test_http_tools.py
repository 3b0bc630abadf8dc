"""HTTP tools against a real HTTP server on 127.0.0.1 (standard library, in a thread)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import make_deployment, portcullis

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


class Recorder(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        Recorder.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path.startswith("/slow"):
            time.sleep(2)
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.split("/")[2].split("?")[0])
        data = json.dumps({"path": self.path, "body": json.loads(body) if body else None}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - the http.server API

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def tools(api: str) -> list[dict[str, Any]]:
    schema = {
        "type": "object",
        "properties": {"item": {"type": "string"}, "q": {"type": "string"}, "note": {"type": "string"}},
        "additionalProperties": False,
    }
    return [
        {
            "name": "api.get",
            "url": f"{api}/items/{{item}}",
            "parameters": {"item": "path", "q": "query"},
            "input_schema": schema,
            "headers": {"x-api-key": "${API_KEY:-configured-secret}"},
        },
        {"name": "api.post", "method": "POST", "url": f"{api}/items", "input_schema": schema},
        {"name": "api.not_found", "url": f"{api}/status/404", "input_schema": schema},
        {"name": "api.broken", "url": f"{api}/status/503", "input_schema": schema},
        {"name": "api.slow", "url": f"{api}/slow", "input_schema": schema, "timeout_seconds": 0.5},
        {"name": "api.refused", "url": "http://127.0.0.1:9/nothing", "input_schema": schema},
    ]


def deployment(tmp_path: Path, api: str) -> Path:
    return make_deployment(
        tmp_path / "deployment",
        extra_policy="p, role:support, api.*, call, allow\n",
        changes={"tools": {"http": tools(api)}},
    )


async def test_http_tools_fill_path_query_and_body_and_return_json(tmp_path: Path, api: str) -> None:
    async with Gateway(load_config(deployment(tmp_path, api))) as gateway:
        got = await gateway.call_tool(ALICE, "api.get", {"item": "a/b?c", "q": "x y"})
        posted = await gateway.call_tool(ALICE, "api.post", {"note": "hello"})
    assert got.code is OutcomeCode.OK
    assert got.structured == {"path": "/items/a%2Fb%3Fc?q=x+y", "body": None}
    assert Recorder.requests[-2]["headers"]["x-api-key"] == "configured-secret"
    assert posted.structured == {"path": "/items", "body": {"note": "hello"}}


@pytest.mark.parametrize(
    ("tool", "code", "status"),
    [
        ("api.not_found", OutcomeCode.TOOL_FAILED, 404),
        ("api.broken", OutcomeCode.TOOL_FAILED, 503),
        ("api.slow", OutcomeCode.TIMEOUT, None),
        ("api.refused", OutcomeCode.UPSTREAM_UNAVAILABLE, None),
    ],
)
async def test_http_failures_become_clear_outcomes(
    tmp_path: Path, api: str, tool: str, code: OutcomeCode, status: int | None
) -> None:
    async with Gateway(load_config(deployment(tmp_path, api))) as gateway:
        started = time.monotonic()
        outcome = await gateway.call_tool(ALICE, tool, {})
        assert time.monotonic() - started < 1.9
        assert outcome.code is code
        if status is not None:
            assert outcome.data["http_status"] == status
            assert f"HTTP {status}" in outcome.message
        assert (await gateway.call_tool(ALICE, "api.get", {"item": "still-serving"})).code is OutcomeCode.OK


OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "Items", "version": "1"},
    "servers": [{"url": "http://placeholder.invalid"}],
    "paths": {
        "/items/{item}": {
            "parameters": [{"name": "item", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getItem",
                "summary": "Read an item",
                "parameters": [
                    {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "x-trace", "in": "header", "schema": {"type": "string"}},
                ],
            },
            "delete": {"operationId": "deleteItem"},
        },
        "/items": {
            "post": {
                "operationId": "createItem",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewItem"}}},
                },
            }
        },
    },
    "components": {
        "schemas": {
            "NewItem": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
            }
        }
    },
}


async def test_an_openapi_document_becomes_reviewable_http_tools(tmp_path: Path, api: str) -> None:
    path = make_deployment(tmp_path / "deployment", extra_policy="p, role:support, items.*, call, allow\n")
    document = tmp_path / "items.openapi.json"
    document.write_text(json.dumps(OPENAPI))
    output = path.parent / "tools" / "items.http.yaml"
    result = portcullis(
        "tools", "import-openapi", str(document), "--namespace", "items", "--base-url", api, "-o", str(output)
    )
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(output.read_text())["http_tools"]
    assert {t["name"]: t["method"] for t in written} == {
        "items.getItem": "GET",
        "items.deleteItem": "DELETE",
        "items.createItem": "POST",
    }
    create = next(t for t in written if t["name"] == "items.createItem")
    assert create["input_schema"]["required"] == ["name"]
    assert create["annotations"]["readOnlyHint"] is False

    config = yaml.safe_load(path.read_text())
    config["tools"]["http_files"] = ["tools/items.http.yaml"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    async with Gateway(load_config(path)) as gateway:
        got = await gateway.call_tool(ALICE, "items.getItem", {"item": "7", "verbose": True, "x-trace": "t1"})
        created = await gateway.call_tool(ALICE, "items.createItem", {"name": "widget", "count": 2})
        invalid = await gateway.call_tool(ALICE, "items.createItem", {"count": 2})
    assert got.structured == {"path": "/items/7?verbose=true", "body": None}
    assert Recorder.requests[-2]["headers"]["x-trace"] == "t1"
    assert created.structured == {"path": "/items", "body": {"name": "widget", "count": 2}}
    assert invalid.code is OutcomeCode.INVALID_ARGUMENTS


def test_an_openapi_document_without_a_server_url_needs_one(tmp_path: Path) -> None:
    document = tmp_path / "items.openapi.json"
    document.write_text(json.dumps({**OPENAPI, "servers": []}))
    result = portcullis(
        "tools", "import-openapi", str(document), "--namespace", "items", "-o", str(tmp_path / "x.yaml")
    )
    assert result.returncode == 1 and "pass --base-url" in result.stderr


async def test_an_openapi_document_can_be_loaded_at_start_up(tmp_path: Path, api: str) -> None:
    path = make_deployment(tmp_path / "deployment", extra_policy="p, role:support, items.*, call, allow\n")
    (path.parent / "items.openapi.yaml").write_text(yaml.safe_dump(OPENAPI))
    config = yaml.safe_load(path.read_text())
    config["tools"]["openapi"] = [{"file": "items.openapi.yaml", "namespace": "items", "base_url": api}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    async with Gateway(load_config(path)) as gateway:
        outcome = await gateway.call_tool(ALICE, "items.getItem", {"item": "9"})
    assert outcome.structured == {"path": "/items/9", "body": None}
