"""Proxying `@modelcontextprotocol/server-everything`, a server nobody on this team wrote
(npm; installed by `make test` / `.ci/run` into tests/e2e/js), through both front transports."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import connector
from support import make_deployment

pytestmark = [pytest.mark.anyio]

EVERYTHING = Path(__file__).parent / "js" / "node_modules" / "@modelcontextprotocol" / "server-everything"
NODE = shutil.which("node")

if not (EVERYTHING / "dist" / "index.js").exists() or NODE is None:
    pytestmark.append(pytest.mark.skip(reason="server-everything is not installed: run `npm ci --prefix tests/e2e/js`"))


@pytest.fixture(scope="module")
def everything_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    upstream = {
        "namespace": "everything",
        "stdio": {"command": NODE or "node", "args": [str(EVERYTHING / "dist" / "index.js"), "stdio"]},
        "timeout_seconds": 20,
    }
    return make_deployment(
        tmp_path_factory.mktemp("everything") / "deployment",
        extra_policy="p, role:support, everything.*, call, allow\n",
        changes={"upstreams": [upstream], "tools": {"new_tools": "allow"}},
    )


@pytest.mark.parametrize("mode", ["stdio-legacy", "stdio-auto", "http-legacy", "http-auto"])
async def test_server_everything_works_through_the_gateway(
    mode: str, everything_config: Path, serve_http: Callable[[Path], str]
) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with connector(everything_config, mode, serve_http)("alice") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        echoed = await client.call_tool("everything.echo", {"message": "through the gate"})
        summed = await client.call_tool("everything.get-sum", {"a": 19, "b": 23})
        weather = await client.call_tool("everything.get-structured-content", {"location": "Chicago"})
        invalid = await client.call_tool("everything.get-structured-content", {"location": "Atlantis"})
        slow = await client.call_tool(
            "everything.trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
    assert {"everything.echo", "everything.get-sum", "everything.get-structured-content"} <= names
    assert echoed.content[0].text == "Echo: through the gate"  # type: ignore[union-attr]
    assert "42" in summed.content[0].text  # type: ignore[union-attr]
    assert weather.structured_content is not None and set(weather.structured_content) == {
        "temperature",
        "conditions",
        "humidity",
    }
    assert invalid.is_error and invalid.meta is not None
    assert invalid.meta["portcullis/error"]["code"] == "invalid_arguments"
    assert not slow.is_error
    assert progress == [(1, 3), (2, 3), (3, 3)]
