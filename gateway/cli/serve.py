"""`portcullis serve`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import click

from gateway.cli.options import config_option, load_gateway, resolve_subject
from gateway.gateway import Gateway
from gateway.outcomes import AuditWriteError, ConfigError
from gateway.serving import serve_http, serve_stdio, transport_security
from gateway.store.errors import StoreCorrupt
from gateway.store.stores import build_stores


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
    configure_logging()
    gateway = load_gateway(config_path, mode="server")
    config = gateway.config
    if transport == "http":
        try:
            transport_security(config.server, host or config.server.host)
        except ConfigError as exc:
            raise click.ClickException(f"{config.file}: {'; '.join(exc.problems)}") from exc
    anyio.run(check_audit_database, gateway)
    if transport == "stdio":
        from_env = os.environ.get("PORTCULLIS_SUBJECT")
        identity = resolve_subject(config, subject, "--as") if subject else resolve_subject(config, from_env, "env")
        anyio.run(serve_stdio, gateway, identity.subject, f"stdio:{identity.how}")
        return
    server = config.server
    anyio.run(serve_http, gateway, host or server.host, server.port if port is None else port)


LIBRARIES = ("casbin", "httpx", "httpcore", "mcp")
"""Libraries that log every request at INFO (or set their own level): on stderr only from WARNING."""


def configure_logging() -> None:
    """The gateway's own INFO lines (reloads, refused credentials) and every warning, on stderr.

    A stdio server's stderr is read by people (the client's log window): libraries' INFO
    lines (each HTTP request a tool makes) would bury the gateway's. Uvicorn configures its
    own loggers (the HTTP access log) from `serving.py`.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gateway").setLevel(logging.INFO)
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)


async def check_audit_database(gateway: Gateway) -> None:
    """Open the stores once before serving, so that a file that is not an audit database, or a database
    that is down or not initialised, is one line naming it and what to do, not a traceback from inside
    the server's start-up."""
    config = gateway.config
    stores = build_stores(config)  # a set of its own: a PostgreSQL pool, once closed, is not opened again
    where = f"audit.path {config.audit.path}" if stores.backend == "sqlite" else f"store.dsn {stores.where}"
    try:
        await stores.open(config.audit.salt)
    except StoreCorrupt as exc:
        if stores.backend != "sqlite":
            raise click.ClickException(f"the database ({where}) is damaged: {exc}") from exc
        raise click.ClickException(
            f"audit.path {config.audit.path} is not a Portcullis audit database ({exc.reason}):"
            " move it away or point audit.path elsewhere"
        ) from exc
    except AuditWriteError as exc:
        raise click.ClickException(f"cannot open the audit log ({where}): {exc}") from exc
    await stores.close()
    key = config.resolve(config.audit.checkpoint_key)
    if stores.backend != "sqlite" and not key.exists():
        raise click.ClickException(
            f"{config.file}: audit.checkpoint_key: no signing key at {key}; replicas share one key:"
            " `portcullis db init` creates it, then copy it (and its .pub) to every replica"
        )
