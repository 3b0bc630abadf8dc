"""HTTP tools against a real HTTP server on 127.0.0.1 (standard library, in a thread)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pytest
import yaml
from support import cli, make_deployment

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

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

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:
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
    result = cli("tools", "import-openapi", str(document), "--namespace", "items", "--base-url", api, "-o", str(output))
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
    result = cli("tools", "import-openapi", str(document), "--namespace", "items", "-o", str(tmp_path / "x.yaml"))
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


class Redirector(BaseHTTPRequestHandler):
    """/to/HOST:PORT/PATH answers 302 to http://HOST:PORT/PATH; anything else answers with what it saw."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        Redirector.seen.append({"path": self.path, "headers": dict(self.headers)})
        path = unquote(self.path)
        if path.startswith("/to/"):
            self.send_response(302)
            self.send_header("location", "http://" + path[len("/to/") :])
            self.send_header("content-length", "0")
            self.end_headers()
            return
        data = json.dumps({"path": self.path, "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_public_only_tools_connect_to_the_checked_address_and_check_every_redirect(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    guarded = {
        "url": f"http://127.0.0.1:{port}/{{path}}",
        "parameters": {"path": "path"},
        "input_schema": schema,
        "headers": {"authorization": "Bearer configured-secret"},
        "max_redirects": 3,
    }
    http_tools = [
        # an intranet API the operator allows, while everything else must be public
        {"name": "web.allowed", **guarded, "public_only": True, "allow_networks": ["127.0.0.1/32"]},
        {"name": "web.public", **guarded, "public_only": True},
    ]
    path = make_deployment(
        tmp_path / "deployment",
        extra_policy="p, role:support, web.*, call, allow\n",
        changes={"tools": {"http": http_tools}},
    )
    try:
        async with Gateway(load_config(path)) as gateway:
            ok = await gateway.call_tool(ALICE, "web.allowed", {"path": "hello"})
            assert ok.code is OutcomeCode.OK and ok.structured == {"path": "/hello", "host": f"127.0.0.1:{port}"}

            # a redirect to an address outside the allowed network is refused before connecting
            before = len(Redirector.seen)
            hop = await gateway.call_tool(ALICE, "web.allowed", {"path": f"to/127.0.0.2:{port}/x"})
            assert hop.code is OutcomeCode.GUARDRAIL_BLOCKED
            assert hop.data["findings"][0]["rule"] == "urls.internal_address"
            assert len(Redirector.seen) == before + 1  # only the first request was made

            # a redirect within the allowed network is followed; the tool's credentials stay with their origin
            follow = await gateway.call_tool(ALICE, "web.allowed", {"path": f"to/127.0.0.1:{port}/final"})
            assert follow.code is OutcomeCode.OK and follow.structured["path"] == "/final"
            headers = {k.lower(): v for k, v in Redirector.seen[-1]["headers"].items()}
            assert headers["authorization"] == "Bearer configured-secret"

            # nothing internal at all for a public-only tool
            refused = await gateway.call_tool(ALICE, "web.public", {"path": "hello"})
            assert refused.code is OutcomeCode.GUARDRAIL_BLOCKED
    finally:
        server.shutdown()
        server.server_close()
