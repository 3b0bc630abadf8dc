"""Upstream MCP servers, proxied under a namespace.

Each upstream is one long-lived `mcp.Client` (stdio subprocess or Streamable
HTTP) held open by a background task; calls share it, up to the configured
concurrency. Failure is contained to the upstream: a server that does not
start, crashes, hangs or talks garbage makes its own calls fail fast with
`upstream_unavailable` (or `timeout`), and is restarted, with backoff, by the
next call. The caller's identity and credentials are never forwarded: an
upstream sees only what its config gives it.

Upstreams are spoken to in the handshake era (`mode="legacy"`): it is what
servers in the field speak, and it delivers `tools/list_changed`.

Elicitation and sampling: the connection is shared by every caller, so the
gateway declares a capability to an upstream only when policy could let one of
its tools use it (`offer`, from `pipeline/relay.py`); otherwise the upstream is
never told yes. When it is told yes, the tools it lists only because of that
are found by listing once more on a short-lived connection without the
capability (`capability_needs`), so that a client lacking the capability is not
shown them. Each relayed request is governed by the `Relay` the call brings.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from gateway.config import UpstreamConfig
from gateway.outcomes import UpstreamError
from gateway.tool_api import Relay, ToolContext
from gateway.tool_types import SourceHealth, ToolDefinition, ToolResult
from gateway.version import __version__

logger = logging.getLogger(__name__)

RESERVED_META_PREFIX = "io.modelcontextprotocol/"
ENV_PROGRAM = shutil.which("env") if os.name == "posix" else None
_NO_RELAY = (
    "the gateway cannot relay this request: the calling client's connection has no back channel,"
    " or several calls are waiting on this server"
)
MAX_BACKOFF_SECONDS = 30.0
_CONNECTION_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    OSError,
    httpx2.TransportError,
)

OnChange = Callable[[], Awaitable[None]]
T = TypeVar("T")


class McpUpstream:
    kind = "mcp"

    def __init__(self, config: UpstreamConfig, root: Path, on_change: OnChange | None = None) -> None:
        self.config = config
        self.namespace = config.namespace
        self.name = f"mcp:{config.namespace}"
        self.timeout_seconds = config.timeout_seconds
        self._root = root
        self._on_change = on_change
        self._tools: dict[str, ToolDefinition] = {}
        self._original: dict[str, str] = {}
        self.resources: list[types.Resource] = []
        self.resource_templates: list[types.ResourceTemplate] = []
        self.prompts: list[types.Prompt] = []
        """Listed as the upstream names them; the gateway namespaces them."""
        self._client: Client | None = None
        self._disconnect: anyio.Event | None = None
        self._tasks: TaskGroup | None = None
        self._connect_lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(config.max_concurrency)
        self._status: str = "starting"
        self._detail = ""
        self._failures = 0
        self._retry_at = 0.0
        self._in_flight: dict[object, Relay | None] = {}
        """Calls waiting on this upstream, with their callers' back channels (for elicitation and sampling)."""
        self._offered: frozenset[str] = frozenset()
        """Client capabilities declared to this upstream: `elicitation`, `sampling` (none unless policy allows)."""
        self.capability_needs: dict[str, frozenset[str]] = {}
        """Tools (gateway names) this upstream lists only when told of these capabilities."""

    def offer(self, *, elicitation: bool, sampling: bool) -> None:
        """Set what the next connection declares; a change reconnects (the handshake is the only place to say it)."""
        offered = frozenset(name for name, on in (("elicitation", elicitation), ("sampling", sampling)) if on)
        if offered == self._offered:
            return
        self._offered = offered
        if self._client is not None and self._tasks is not None:
            self._tasks.start_soon(self._reconnect)

    async def _reconnect(self) -> None:
        async with self._connect_lock:
            if self._disconnect is not None:
                self._disconnect.set()
            self._client = None
            await self._connect()

    # --- lifecycle -------------------------------------------------------

    async def start(self, tasks: TaskGroup) -> None:
        """Connect once; a failure leaves the upstream down (and retried on the next call), not the gateway."""
        self._tasks = tasks
        async with self._connect_lock:
            await self._connect()

    async def close(self) -> None:
        if self._disconnect is not None:
            self._disconnect.set()
        self._client = None

    def health(self) -> SourceHealth:
        status = "ok" if self._client is not None else ("starting" if self._status == "starting" else "down")
        return SourceHealth(
            source=self.name,
            kind=self.kind,
            status=status,  # type: ignore[arg-type]
            detail=self._detail,
            tools=len(self._tools),
        )

    def list_tools(self) -> list[ToolDefinition]:
        return list(self._tools.values())

    # --- calls -----------------------------------------------------------

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        original = self._original.get(tool.name, tool.name.removeprefix(f"{self.namespace}."))
        token = object()
        self._in_flight[token] = context.relay
        try:
            result = await self._request(
                lambda client: client.call_tool(original, arguments, progress_callback=context.progress)
            )
        finally:
            del self._in_flight[token]
        return to_tool_result(result)

    def _relay(self) -> Relay | None:
        """The back channel to ask, when exactly one call is waiting on this upstream.

        A handshake-era request from the upstream does not say which call it belongs to,
        so with several calls in flight it cannot be routed safely and is refused.
        """
        if len(self._in_flight) != 1:
            return None
        return next(iter(self._in_flight.values()))

    async def _elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        relay = self._relay()
        if relay is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message=_NO_RELAY)
        return await relay.elicit(params)

    async def _sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        relay = self._relay()
        if relay is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message=_NO_RELAY)
        return await relay.sample(params)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        return await self._request(lambda client: client.read_resource(uri))

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        return await self._request(lambda client: client.get_prompt(name, arguments))

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
    ) -> types.CompleteResult:
        return await self._request(lambda client: client.complete(ref, argument, context))

    async def _request(self, send: Callable[[Client], Awaitable[T]]) -> T:
        """Send one request upstream; map every way it can fail to `UpstreamError`."""
        client = await self._connected()
        async with self._limiter:
            try:
                return await send(client)
            except MCPError as exc:
                if exc.error.code == types.CONNECTION_CLOSED:
                    await self._failed(f"connection closed: {exc.error.message}")
                    raise UpstreamError(f"upstream {self.namespace} closed the connection") from exc
                raise UpstreamError(f"upstream {self.namespace} refused the request: {exc.error.message}") from exc
            except _CONNECTION_ERRORS as exc:
                await self._failed(f"{type(exc).__name__}: {exc}")
                raise UpstreamError(f"upstream {self.namespace} is unavailable: {type(exc).__name__}") from exc
            except RuntimeError as exc:  # the SDK client's output-schema check
                raise UpstreamError(f"upstream {self.namespace} returned an invalid result: {exc}") from exc

    # --- connection management --------------------------------------------

    async def _connected(self) -> Client:
        client = self._client
        if client is not None:
            return client
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise UpstreamError(f"upstream {self.namespace} is down ({self._detail}); next restart in {wait:.1f} s")
            if not await self._connect():
                raise UpstreamError(f"upstream {self.namespace} is down: {self._detail}")
            client = self._client
            if client is None:
                raise UpstreamError(f"upstream {self.namespace} is down: {self._detail}")
            return client

    async def _connect(self) -> bool:
        if self._tasks is None:
            raise UpstreamError(f"upstream {self.namespace} was not started")
        try:
            with anyio.fail_after(self.config.connect_timeout_seconds):
                await self._tasks.start(self._hold_connection)
        except TimeoutError:
            self._down(f"did not answer within {self.config.connect_timeout_seconds:g} s")
            return False
        except Exception as exc:  # seam: a server that fails to start can raise anything
            self._down(f"failed to start: {describe(exc)}")
            return False
        return True

    async def _hold_connection(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the client for its whole life: entered and exited in this one task, as anyio requires."""
        disconnect = anyio.Event()
        started = False
        reconnect = self._status != "starting"
        try:
            async with self._open_client(self._offered) as client:
                tools = await _list_all_tools(client)
                needs = await self._capability_needs(tools)
                self._install(tools, needs)
                await self._list_resources_and_prompts(client)
                self._client, self._disconnect = client, disconnect
                self._status, self._detail, self._failures = "ok", "", 0
                started = True
                task_status.started()
                if reconnect:  # a restart may bring other tools: the catalog is rebuilt and pins re-checked
                    await self._changed()
                await disconnect.wait()
        except Exception as exc:
            if not started:
                raise
            self._down(f"connection lost: {describe(exc)}")
        finally:
            if self._disconnect is disconnect:
                self._client = None

    def _open_client(self, capabilities: frozenset[str], *, probe: bool = False) -> Client:
        options: dict[str, Any] = {
            "message_handler": _ignore if probe else self._on_message,
            "client_info": types.Implementation(name="portcullis", version=__version__),
        }
        # The SDK declares a capability exactly when its callback is given.
        if "elicitation" in capabilities:
            options["elicitation_callback"] = self._elicit
        if "sampling" in capabilities:
            options["sampling_callback"] = self._sample
        if self.config.stdio is not None:
            stdio = self.config.stdio
            env = {name: os.environ[name] for name in stdio.inherit_env if name in os.environ}
            env.update(stdio.env)
            cwd = self._root if stdio.cwd is None else self._root / stdio.cwd  # an absolute cwd stays itself
            # The SDK adds HOME, SHELL, TERM, USER... to every server's environment; `env -i`
            # starts the server with exactly the variables configured for it.
            command, args = stdio.command, list(stdio.args)
            problem = unstartable(command, env.get("PATH", os.defpath), cwd)
            if problem is not None:  # said here: `env` (or the SDK) would only print it to stderr
                raise UpstreamError(problem)
            if ENV_PROGRAM is not None:
                command, args = ENV_PROGRAM, ["-i", *(f"{k}={v}" for k, v in env.items()), command, *args]
            params = StdioServerParameters(command=command, args=args, env=env, cwd=str(cwd))
            return Client(params, mode="legacy", cache=None, **options)
        if self.config.http is None:  # UpstreamConfig's validator requires stdio or http
            raise UpstreamError(f"upstream {self.namespace} has neither stdio nor http settings")
        session = httpx2.AsyncClient(headers=self.config.http.headers, timeout=self.config.timeout_seconds)
        transport = streamable_http_client(self.config.http.url, http_client=session)
        return Client(transport, mode="legacy", cache=None, **options)

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self._tasks is not None:
            # Not inline: listing from inside the client's receive loop would wait on itself.
            self._tasks.start_soon(self._relist)
        elif isinstance(message, Exception):
            logger.warning("upstream %s sent something that is not MCP: %s", self.namespace, message)

    async def _list_resources_and_prompts(self, client: Client) -> None:
        capabilities = client.server_capabilities
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        prompts: list[types.Prompt] = []
        if capabilities.resources is not None:
            resources = await _all_pages(client.list_resources, "resources")
            templates = await _all_pages(client.list_resource_templates, "resource_templates")
        if capabilities.prompts is not None:
            prompts = await _all_pages(client.list_prompts, "prompts")
        self.resources, self.resource_templates, self.prompts = resources, templates, prompts

    async def _capability_needs(self, tools: list[types.Tool]) -> dict[str, frozenset[str]]:
        """Which tools appear only because a capability was declared: list again without each one.

        One short-lived extra connection per declared capability (in parallel), only when one is
        declared. A probe that fails leaves the tools unmarked (they stay listed; their requests
        are still governed by policy and guardrails).
        """
        needs: dict[str, set[str]] = {}
        listed = {tool.name for tool in tools}

        async def probe(capability: str) -> None:
            try:
                with anyio.fail_after(self.config.connect_timeout_seconds):
                    async with self._open_client(self._offered - {capability}, probe=True) as client:
                        without = {tool.name for tool in await _list_all_tools(client)}
            except Exception as exc:  # seam: a probe can fail in every way a connection can
                logger.warning("upstream %s: listing tools without %s failed: %s", self.namespace, capability, exc)
                return
            for name in listed - without:
                needs.setdefault(f"{self.namespace}.{name}", set()).add(capability)

        async with anyio.create_task_group() as probes:
            for capability in sorted(self._offered):
                probes.start_soon(probe, capability)
        return {name: frozenset(capabilities) for name, capabilities in needs.items()}

    async def _relist(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            tools = await _list_all_tools(client)
            self._install(tools, await self._capability_needs(tools))
        except Exception as exc:  # seam: a failing re-list leaves the previous catalog in place
            logger.warning("upstream %s: re-listing tools failed: %s", self.namespace, exc)
            return
        await self._changed()

    async def _changed(self) -> None:
        """Tell the gateway the tools changed; its failure is not this upstream's (it stays up)."""
        if self._on_change is None:
            return
        try:
            await self._on_change()
        except Exception:  # seam: a consumer's callback must not take the connection down
            logger.exception("upstream %s: the gateway could not take in the changed tools", self.namespace)

    def _install(self, tools: list[types.Tool], needs: dict[str, frozenset[str]]) -> None:
        definitions: dict[str, ToolDefinition] = {}
        original: dict[str, str] = {}
        for tool in tools:
            name = f"{self.namespace}.{tool.name}"
            definitions[name] = ToolDefinition(
                name=name,
                title=tool.title,
                description=tool.description or "",
                input_schema=dict(tool.input_schema),
                output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
                annotations=tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {},
                source=self.name,
                timeout_seconds=self.config.timeout_seconds,
            )
            original[name] = tool.name
        self._tools, self._original, self.capability_needs = definitions, original, needs

    async def _failed(self, detail: str) -> None:
        self._down(detail)
        if self._disconnect is not None:
            self._disconnect.set()
        self._client = None

    def _down(self, detail: str) -> None:
        self._failures += 1
        backoff = min(self.config.restart_backoff_seconds * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS)
        self._retry_at = time.monotonic() + backoff
        self._status, self._detail = "down", detail
        logger.warning("upstream %s is down (%s); restart allowed in %.1f s", self.namespace, detail, backoff)


def unstartable(command: str, path: str, cwd: Path) -> str | None:
    """Why `command` cannot be started with this PATH in `cwd` (None when it can), in the words of the OS."""
    if os.sep in command or (os.altsep is not None and os.altsep in command):
        program = cwd / command  # an absolute command stays itself
        if not program.exists():
            return f"{command}: No such file or directory"
        if program.is_dir():
            return f"{command}: Is a directory"
        if not os.access(program, os.X_OK):
            return f"{command}: Permission denied"
        return None
    if shutil.which(command, path=path) is None:
        return f"{command}: not found on its PATH (No such file or directory)"
    return None


def describe(exc: BaseException) -> str:
    """What went wrong, in one line: the cause inside the task groups' wrapping, not the wrapping.

    The SDK's transports run in task groups, so a server that fails arrives as an
    `ExceptionGroup` ("unhandled errors in a TaskGroup"), which says nothing by itself.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner: list[BaseException] = list(exc.exceptions)
        exc = next((e for e in inner if isinstance(e, Exception)), inner[0])  # not the cancellations it caused
    if isinstance(exc, UpstreamError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _ignore(message: types.ServerNotification | Exception) -> None:
    """A probe connection's notifications (it lives for one listing) are not the upstream's news."""


async def _list_all_tools(client: Client) -> list[types.Tool]:
    return await _all_pages(client.list_tools, "tools")


async def _all_pages(list_page: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(10_000):  # a server that pages forever is cut off
        page = await list_page(cursor=cursor)
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


def to_tool_result(result: types.CallToolResult) -> ToolResult:
    meta = {k: v for k, v in (result.meta or {}).items() if not k.startswith(RESERVED_META_PREFIX)}
    return ToolResult(
        content=[block.model_dump(by_alias=True, mode="json", exclude_none=True) for block in result.content],
        structured=result.structured_content,
        is_error=bool(result.is_error),
        meta=meta,
    )
