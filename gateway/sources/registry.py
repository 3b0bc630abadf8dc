"""All of a deployment's tool sources, started and stopped together.

Python and HTTP tools are described by files; upstream MCP servers are live
connections. The set owns the task group their background work runs in, and
calls `on_change` when an upstream's tools change so the gateway can rebuild
its catalog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType

import anyio

from gateway.config import GatewayConfig, HttpToolConfig
from gateway.outcomes import ConfigError
from gateway.sources.base import SourceHealth, ToolSource
from gateway.sources.http import HttpToolSource
from gateway.sources.mcp_upstream import McpUpstream
from gateway.sources.openapi import import_openapi
from gateway.sources.python import PythonToolSource


class SourceSet:
    def __init__(
        self,
        config: GatewayConfig,
        on_change: Callable[[], Awaitable[None]] | None = None,
        builtin: list[ToolSource] | None = None,
    ) -> None:
        sources: list[ToolSource] = list(builtin or [])
        sources += [
            PythonToolSource(config.resolve(entry.path), dict(entry.settings), config.root)
            for entry in config.tools.python
        ]
        http_tools = list(config.tools.http)
        for path in config.tools.http_files:
            http_tools.extend(HttpToolSource.load_file(config.resolve(path)))
        for document in config.tools.openapi:
            try:
                imported = import_openapi(config.resolve(document.file), document.namespace, document.base_url)
            except ValueError as exc:
                raise ConfigError([str(exc)]) from exc
            http_tools.extend(HttpToolConfig.model_validate(tool) for tool in imported)
        if http_tools:
            sources.append(HttpToolSource(http_tools))
        sources.extend(McpUpstream(upstream, config.root, on_change) for upstream in config.upstreams)
        self.sources: tuple[ToolSource, ...] = tuple(sources)
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> SourceSet:
        async with AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)  # runs after _close_all (exit order is LIFO)
            stack.push_async_callback(self._close_all)
            # Upstreams connect in parallel; one that is slow or broken does not hold up the others.
            async with anyio.create_task_group() as starting:
                for source in self.sources:
                    starting.start_soon(source.start, tasks)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.__aexit__(exc_type, exc, tb)

    async def _close_all(self) -> None:
        for source in self.sources:
            await source.close()

    def health(self) -> list[SourceHealth]:
        return [source.health() for source in self.sources]

    def upstreams(self) -> list[McpUpstream]:
        return [source for source in self.sources if isinstance(source, McpUpstream)]
