"""Proxying `@modelcontextprotocol/server-everything`, a server nobody on this team wrote
(npm; installed by `make test` / `.ci/run` into tests/e2e/js), through both front transports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcp import types
from servers import Servers, connector
from support import make_deployment

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

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
        extra_policy="".join(f"p, role:support, everything.*, {action}, allow\n" for action in ("call", "read", "get")),
        changes={"upstreams": [upstream], "tools": {"new_tools": "allow"}},
    )


@pytest.mark.parametrize("mode", ["stdio-legacy", "stdio-auto", "http-legacy", "http-auto"])
async def test_server_everything_works_through_the_gateway(
    mode: str, everything_config: Path, servers: Servers
) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with connector(everything_config, mode, servers)("alice") as client:
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


@pytest.mark.parametrize("mode", ["stdio-legacy", "http-auto"])
async def test_server_everythings_prompts_templates_and_completions_are_federated(
    mode: str, everything_config: Path, servers: Servers
) -> None:
    async with connector(everything_config, mode, servers)("alice") as client:
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        simple = await client.get_prompt("everything.simple-prompt", {})
        dynamic = await client.read_resource("demo://resource/dynamic/text/7")
        completion = await client.complete(
            types.PromptReference(type="ref/prompt", name="everything.completable-prompt"),
            {"name": "department", "value": "E"},
        )
    assert {"everything.simple-prompt", "everything.completable-prompt"} <= prompts
    assert "demo://resource/dynamic/text/{resourceId}" in templates
    assert simple.messages
    assert dynamic.contents and "7" in str(dynamic.contents[0])
    assert completion.completion.values == ["Engineering"]
