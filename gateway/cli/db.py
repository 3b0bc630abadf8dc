"""`portcullis db init|check`: create the gateway's database, and say whether it is ready to serve.

SQLite (the default) creates its file and schema on first use too, so `db init` there only makes it
early. PostgreSQL is shared by replicas and its schema is changed on purpose: `db init` applies the
versioned migrations (idempotent, safe to run from several replicas at once), and `serve` refuses to
start on a database whose schema is missing, behind, or newer than its code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli.options import config_option, echo_json, json_option, load
from gateway.config import GatewayConfig
from gateway.outcomes import PortcullisError


@click.group()
def db() -> None:
    """Create and check the gateway's database (SQLite file or PostgreSQL)."""


@db.command()
@config_option
def init(config_path: Path) -> None:
    """Create the schema, triggers and grants (idempotent): run it before the first `serve` on PostgreSQL."""
    config = load(config_path)
    try:
        if config.store.backend == "sqlite":
            path = _sqlite_init(config)
            click.echo(f"sqlite database ready at {path}")
            return
        where, applied, version = _postgres_init(config)
    except PortcullisError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
    click.echo(f"postgresql database ready at {where} (schema version {version})")
    key = config.resolve(config.audit.checkpoint_key)
    if not key.exists():
        from gateway.audit.checkpoints import load_or_create_key, public_key_path

        load_or_create_key(key)
        click.echo(
            f"created the checkpoint signing key {key} (public: {public_key_path(key)}):"
            " give every replica this same key, as a secret"
        )


@db.command()
@config_option
@json_option
def check(config_path: Path, as_json: bool) -> None:
    """Say whether the database is reachable and its schema current; exit 1 when it is not ready."""
    config = load(config_path)
    try:
        report = _sqlite_check(config) if config.store.backend == "sqlite" else _postgres_check(config)
    except PortcullisError as exc:
        report = {"backend": config.store.backend, "ready": False, "problem": str(exc)}
    if as_json:
        echo_json(report)
    elif report["ready"]:
        click.echo(f"ready: {report['backend']} at {report['where']}, schema version {report['version']}")
    else:
        click.echo(f"not ready: {report['problem']}", err=True)
    if not report["ready"]:
        raise SystemExit(1)


def _sqlite_init(config: GatewayConfig) -> Path:
    from gateway.audit.store import open_database

    path = config.resolve(config.audit.path)
    open_database(path).close()
    return path


def _sqlite_check(config: GatewayConfig) -> dict[str, Any]:
    path = config.resolve(config.audit.path)
    if not path.exists():
        problem = f"no database at {path} yet: `portcullis db init` (or the first `serve`) creates it"
        return {"backend": "sqlite", "where": str(path), "ready": False, "problem": problem}
    from gateway.audit.query import open_readonly
    from gateway.store.errors import StoreError
    from gateway.store.sqlite.errors import sqlite_errors

    try:
        with sqlite_errors(f"cannot read the database at {path}"):
            connection = open_readonly(path)
            try:
                connection.execute("SELECT count(*) FROM audit_log").fetchone()
            finally:
                connection.close()
    except StoreError as exc:
        return {"backend": "sqlite", "where": str(path), "ready": False, "problem": str(exc)}
    return {"backend": "sqlite", "where": str(path), "ready": True, "version": "current"}


def _postgres_init(config: GatewayConfig) -> tuple[str, list[str], int]:
    from gateway.store.postgres.connect import open_pool, redact
    from gateway.store.postgres.migrate import migrate, status

    dsn = config.store.dsn or ""
    pool = open_pool(dsn)
    try:
        applied = migrate(pool)
        with pool.connection() as connection:
            version = status(connection).current
    finally:
        pool.close()
    return redact(dsn), applied, version


def _postgres_check(config: GatewayConfig) -> dict[str, Any]:
    from gateway.store.postgres.connect import open_pool, redact
    from gateway.store.postgres.migrate import status

    dsn = config.store.dsn or ""
    pool = open_pool(dsn)
    try:
        with pool.connection() as connection:
            schema = status(connection)
    finally:
        pool.close()
    report: dict[str, Any] = {
        "backend": "postgresql",
        "where": redact(dsn),
        "version": schema.current,
        "latest": schema.latest,
        "pending": list(schema.pending),
        "ready": schema.current == schema.latest,
    }
    if schema.current < schema.latest:
        report["problem"] = (
            f"schema version {schema.current} of {schema.latest} at {redact(dsn)}: run `portcullis db init`"
        )
    elif schema.current > schema.latest:
        report["problem"] = (
            f"schema version {schema.current} at {redact(dsn)} is newer than this release knows ({schema.latest}):"
            " upgrade Portcullis"
        )
    return report
