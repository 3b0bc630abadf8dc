"""`portcullis serve`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import click

from gateway.cli.options import config_option, load_gateway
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
    help="The caller's identity on stdio. Default: $PORTCULLIS_SUBJECT, then identity.default_subject.",
)
def serve(config_path: Path, transport: str, host: str | None, port: int | None, subject: str | None) -> None:
    """Serve the gateway over MCP (Streamable HTTP or stdio).

    Over HTTP the caller is identified by a bearer API key; over stdio by --as.

    Example: portcullis serve --transport stdio --as alice
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("casbin").setLevel(logging.WARNING)
    gateway = load_gateway(config_path)
    config = gateway.config
    if transport == "stdio":
        who = subject or os.environ.get("PORTCULLIS_SUBJECT") or config.identity.default_subject
        if not who:
            raise click.ClickException(
                "no caller identity for stdio: pass --as SUBJECT, set PORTCULLIS_SUBJECT,"
                " or set identity.default_subject in the config"
            )
        anyio.run(serve_stdio, gateway, who)
        return
    server = config.server
    anyio.run(serve_http, gateway, host or server.host, server.port if port is None else port)
