"""Proxying through the gateway's MCP front with real clients: progress, cancellation,
list-changed notifications and credentials, over stdio and Streamable HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.client.subscriptions import ToolsListChanged
from servers import MODES, Servers, connector, free_port, real, wait_for_http
from support import UPSTREAMS, Connect, cli, make_deployment, toy_upstream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_progress_from_an_upstream_reaches_the_client(connect_proxy: Connect) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    async with connect_proxy("alice") as client:
        result = await client.call_tool("toy.slow", {"steps": 3}, progress_callback=progress)
    assert not result.is_error
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_gives_up_cancels_the_upstream_call(connect_proxy: Connect, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with connect_proxy("alice") as client:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's timeout error type differs by transport
            await client.call_tool("toy.hang", {"marker": str(marker)}, read_timeout_seconds=1.5)
        with anyio.fail_after(10):
            while not marker.exists() or marker.read_text() != "cancelled":
                await anyio.sleep(0.05)
        after = await client.call_tool("toy.echo", {"text": "still serving"})
    assert not after.is_error


def pinned_toy_deployment(tmp_path: Path) -> Path:
    """A deployment proxying the toy upstream, its tools pinned (so a change quarantines them)."""
    config = make_deployment(
        tmp_path / "deployment",
        extra_policy="p, role:support, toy.*, call, allow\n",
        changes={"upstreams": [toy_upstream()]},
    )
    assert cli("tools", "pin", "--config", str(config)).returncode == 0
    return config


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["memory-legacy", *real("stdio-legacy", "http-legacy")])
async def test_a_changed_upstream_tool_is_quarantined_and_clients_are_told(
    mode: str, tmp_path: Path, servers: Servers
) -> None:
    config = pinned_toy_deployment(tmp_path)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    connect = connector(config, mode, servers, message_handler=on_message)
    async with connect("alice") as client:
        before = {tool.name for tool in (await client.list_tools()).tools}
        assert "toy.echo" in before
        await client.call_tool("toy.mutate", {})
        with anyio.fail_after(10):
            await changed.wait()
        after = {tool.name for tool in (await client.list_tools(cache_mode="bypass")).tools}
        refused = await client.call_tool("toy.echo", {"text": "x"})
    assert before - after == {"toy.echo"}
    assert refused.is_error and refused.meta is not None
    assert refused.meta["portcullis/error"]["code"] == "tool_definition_changed"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["memory-auto", *real("stdio-auto", "http-auto")])
async def test_2026_clients_hear_of_a_quarantine_on_their_subscription(
    mode: str, tmp_path: Path, servers: Servers
) -> None:
    """2026-07-28 has no server notifications outside requests: clients listen with subscriptions/listen."""
    config = pinned_toy_deployment(tmp_path)
    async with connector(config, mode, servers)("alice") as client:
        before = {tool.name for tool in (await client.list_tools()).tools}
        async with client.listen(tools_list_changed=True) as subscription:
            await client.call_tool("toy.mutate", {})
            with anyio.fail_after(10):
                event = await subscription.__anext__()
        after = {tool.name for tool in (await client.list_tools(cache_mode="bypass")).tools}
    assert isinstance(event, ToolsListChanged)
    assert before - after == {"toy.echo"}


@pytest.fixture(scope="module")
def http_upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAMS / "toy.py"), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    wait_for_http(url, process, Path("/dev/null"), None)
    yield url
    process.terminate()
    process.wait(timeout=15)


@pytest.mark.parametrize("mode", ["memory-legacy", "memory-auto", *real("http-legacy", "http-auto")])
async def test_an_http_upstream_gets_its_own_credentials_never_the_callers(
    mode: str, tmp_path: Path, http_upstream: str, servers: Servers
) -> None:
    config = make_deployment(
        tmp_path / "deployment",
        extra_policy="p, role:support, remote.*, call, allow\n",
        changes={
            "upstreams": [
                {
                    "namespace": "remote",
                    "http": {"url": http_upstream, "headers": {"Authorization": "Bearer ${UP_TOKEN:-up-secret}"}},
                }
            ],
            "tools": {"new_tools": "allow"},
        },
    )
    async with connector(config, mode, servers)("alice") as client:
        result = await client.call_tool("remote.environment", {})
        echoed = await client.call_tool("remote.echo", {"text": "over http"})
    assert result.structured_content is not None
    assert result.structured_content["authorization"] == "Bearer up-secret"
    assert echoed.structured_content == {"text": "over http"}


async def answer_elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    assert params.message == "Which color?"
    return types.ElicitResult(action="accept", content={"color": "blue"})


async def answer_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="hi"), model="test-model"
    )


@pytest.mark.parametrize("mode", ["memory-legacy", *real("stdio-legacy", "http-legacy")])  # handshake era only
async def test_elicitation_and_sampling_are_relayed_to_the_calling_client(
    mode: str, proxy_config: Path, servers: Servers
) -> None:
    connect = connector(
        proxy_config, mode, servers, elicitation_callback=answer_elicitation, sampling_callback=answer_sampling
    )
    async with connect("alice") as client:
        asked = await client.call_tool("toy.ask", {})
        sampled = await client.call_tool("toy.ask_model", {})
    assert asked.structured_content == {"result": "accept:blue"}
    assert sampled.structured_content == {"result": "model said: hi"}


@pytest.mark.parametrize("mode", ["memory-auto", *real("http-auto")])  # 2026-07-28: no server-to-client requests
async def test_without_a_back_channel_an_upstreams_question_fails_the_call_cleanly(
    mode: str, proxy_config: Path, servers: Servers
) -> None:
    async with connector(proxy_config, mode, servers)("alice") as client:
        asked = await client.call_tool("toy.ask", {})
        after = await client.call_tool("toy.echo", {"text": "fine"})
    assert asked.is_error and asked.meta is not None
    assert asked.meta["portcullis/error"]["code"] in {"tool_failed", "upstream_unavailable"}
    assert not after.is_error
