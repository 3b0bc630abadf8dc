"""`portcullis serve`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import click

from gateway.cli.options import config_option, load_gateway, resolve_subject
from gateway.serving import serve_http, serve_stdio


@click.command()
@config_option
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="http",
    show_default=True,
    envvar="PORTCULLIS_TRANSPORT",
    help="Default: $PORTCULLIS_TRANSPORT, else http.",
)
@click.option("--host", default=None, help="Address to bind (HTTP). Default: server.host in config.")
@click.option("--port", type=int, default=None, help="Port to bind (HTTP). Default: server.port in config.")
@click.option(
    "--as",
    "subject",
    default=None,
    help="The caller on stdio (only if identity.allow_choosing_subject, or the OS user's own subject)."
    " Default: $PORTCULLIS_SUBJECT, then the OS user mapped by identity.os_users.",
)
def serve(config_path: Path, transport: str, host: str | None, port: int | None, subject: str | None) -> None:
    """Serve the gateway over MCP (Streamable HTTP or stdio).

    Over HTTP the caller is identified by a bearer API key; over stdio by the OS user running this
    process (identity.os_users), or by --as where identity.allow_choosing_subject is true.

    Example: portcullis serve --transport stdio --as alice
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("casbin").setLevel(logging.WARNING)
    gateway = load_gateway(config_path, mode="server")
    config = gateway.config
    if transport == "stdio":
        from_env = os.environ.get("PORTCULLIS_SUBJECT")
        identity = resolve_subject(config, subject, "--as") if subject else resolve_subject(config, from_env, "env")
        anyio.run(serve_stdio, gateway, identity.subject, f"stdio:{identity.how}")
        return
    server = config.server
    anyio.run(serve_http, gateway, host or server.host, server.port if port is None else port)
