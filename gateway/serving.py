"""Run the MCP server on a transport, with the gateway started and stopped around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from mcp.server import NotificationOptions
from mcp.server.auth.settings import AuthSettings
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import ServerConfig
from gateway.http_auth import BearerVerifier
from gateway.mcp_server import build_server
from gateway.outcomes import ConfigError
from gateway.ports import Served
from gateway.version import __version__


async def serve_stdio(gateway: Served, subject: str, how: str = "stdio") -> None:
    """Serve one stdio client as `subject`; `how` (stdio:os_user, stdio:--as, stdio:env) goes to the audit log."""
    server = build_server(gateway, transport="stdio", stdio_subject=subject, stdio_auth=how, version=__version__)
    async with gateway, stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options(NotificationOptions(tools_changed=True)))


LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
_LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


def transport_security(server: ServerConfig, host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection, always on: the `Host` (and `Origin`) values a request may carry.

    On loopback, the loopback names (as the SDK does) plus any configured. Beyond loopback the SDK
    would switch the protection off; the gateway refuses to start instead until `server.allowed_hosts`
    names the hosts clients use (TLS is terminated in front: see the README's "Several replicas").
    """
    if host not in LOOPBACK and not server.allowed_hosts:
        raise ConfigError(
            [
                f"server.allowed_hosts: binding to {host} needs the Host names clients use"
                " (for example [gateway.acme.example, 'gateway.acme.example:*']): DNS-rebinding protection stays on"
            ]
        )
    loopback = host in LOOPBACK
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*(_LOOPBACK_HOSTS if loopback else ()), *server.allowed_hosts],
        allowed_origins=[*(_LOOPBACK_ORIGINS if loopback else ()), *server.allowed_origins],
    )


def build_http_app(gateway: Served, host: str, port: int) -> Starlette:
    config = gateway.snapshot.config
    security = transport_security(config.server, host)
    base = (config.server.public_url or f"http://{host}:{port}").rstrip("/")
    server = build_server(gateway, transport="http", version=__version__)
    auth = AuthSettings.model_validate(
        {
            "issuer_url": base,
            "resource_server_url": f"{base}{config.server.path}",
            # `BearerVerifier` checks a JWT's audience itself (identity.jwt.audience), and an API key
            # names no resource: the SDK's resource check would refuse every key.
            "validate_token_resource": False,
        }
    )
    app = server.streamable_http_app(
        streamable_http_path=config.server.path,
        host=host,
        transport_security=security,
        auth=auth,
        token_verifier=BearerVerifier(
            lambda: gateway.snapshot.config.identity, config.root, gateway.record_auth_failure
        ),
    )
    # The gateway starts and stops inside the app's lifespan: uvicorn re-raises SIGTERM
    # after serve() returns, so code placed after it would never record the shutdown.
    session_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway, session_lifespan(app):
            yield

    app.router.lifespan_context = lifespan
    app.add_middleware(AuditMissingCredentials, record=gateway.record_auth_failure)
    return app


class AuditMissingCredentials:
    """Record requests refused for having no credentials at all.

    The SDK's authentication middleware answers them 401 before any verifier runs, so without
    this they would leave no trace; refused credentials are recorded by `BearerVerifier`.
    """

    def __init__(self, app: ASGIApp, record: Callable[[str, str], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                peer = (scope.get("client") or ("unknown",))[0]
                self.record("none", f"no credentials ({scope.get('method')} {scope.get('path')} from {peer})")
            await send(message)

        await self.app(scope, receive, watch)


async def serve_http(gateway: Served, host: str, port: int) -> None:
    app = build_http_app(gateway, host, port)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on"))
    await server.serve()
