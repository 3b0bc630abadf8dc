"""The PostgreSQL schema, versioned: what `portcullis db init` applies and `serve` checks.

Each file `migrations/NNNN_name.sql` is one version, applied in order in a transaction of its own
and recorded in `schema_migrations`, so a crash leaves the schema at a version, never between two.
Every step first takes one advisory lock: three replicas running `db init` at once queue on it,
and each finds what the one before applied (it runs once). Nothing migrates a database behind an
operator's back: `serve` calls `require_current`, which refuses a schema that is missing, behind
this release, or ahead of it (a newer release's), and says what to do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from gateway.store.errors import StoreUnavailable
from gateway.store.postgres.errors import pg_errors

MIGRATIONS = Path(__file__).with_name("migrations")
_FILE = re.compile(r"(\d{4})_(\w+)\.sql")
_LOCK = int.from_bytes(sha256(b"portcullis schema migrations").digest()[:8], "big", signed=True)
"""The advisory lock every migrating transaction takes first (the key is this database's alone)."""
_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations"
    " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
)
INIT_HINT = "run `portcullis db init`"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        """`0002_plan_runs`: how messages and `schema_migrations` name it."""
        return f"{self.version:04d}_{self.name}"


def load(folder: Path) -> tuple[Migration, ...]:
    """The migrations shipped with this release, in order; numbered 1, 2, 3... with no gap or repeat."""
    found = []
    for path in folder.glob("*.sql"):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"the migrations in {folder} are not numbered 1..{len(found)}: {[m.label for m in found]}")
    return tuple(found)


KNOWN = load(MIGRATIONS)
LATEST = KNOWN[-1].version
"""The schema version this release's code reads and writes."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this release's migrations."""

    current: int
    """The highest version applied (0: no schema)."""
    latest: int
    pending: tuple[str, ...]
    """This release's migrations above `current`, not applied yet: `db init` applies them."""
    missing: tuple[str, ...]
    """This release's migrations below `current` that were never applied (a hole: `db init` fills it)."""
    extra: tuple[str, ...]
    """Applied migrations this release does not know: the database belongs to a newer release."""

    @property
    def ready(self) -> bool:
        return not (self.pending or self.missing or self.extra) and self.current == self.latest


def status(connection: Connection[Any], known: Sequence[Migration] = KNOWN) -> SchemaStatus:
    """The schema's version against `known` (this release's migrations): what is pending, missing or
    unknown; a database never migrated is version 0."""
    with pg_errors("cannot read the schema version"):
        applied = _applied(connection)
    current = max(applied, default=0)
    mine = {m.version: m for m in known}
    absent = [m for m in known if m.version not in applied]
    extra = tuple(
        f"{version:04d}_{name}"
        for version, name in sorted(applied.items())
        if version not in mine or mine[version].name != name
    )
    return SchemaStatus(
        current=current,
        latest=known[-1].version if known else 0,
        pending=tuple(m.label for m in absent if m.version > current),
        missing=tuple(m.label for m in absent if m.version < current),
        extra=extra,
    )


def require_current(connection: Connection[Any], known: Sequence[Migration] = KNOWN) -> None:
    """Refuse (`StoreUnavailable`) a schema `serve` cannot use: missing, behind this release, or ahead of it."""
    schema = status(connection, known)
    if schema.ready:
        return
    if schema.extra:
        raise StoreUnavailable(
            f"the database schema is at version {schema.current}, newer than this release knows ({schema.latest}):"
            f" it has {', '.join(schema.extra)}; upgrade Portcullis (or give this release a database of its own)"
        )
    if schema.current == 0:
        raise StoreUnavailable(f"the database has no Portcullis schema yet: {INIT_HINT}")
    todo = ", ".join(schema.missing + schema.pending)
    raise StoreUnavailable(
        f"the database schema is at version {schema.current} of {schema.latest} ({todo} not applied): {INIT_HINT}"
    )


def migrate(target: ConnectionPool | Connection[Any], known: Sequence[Migration] = KNOWN) -> list[str]:
    """Apply the migrations of `known` (this release's) that the database lacks, in order; the ones applied now.

    Idempotent, and safe from several processes at once. A database with migrations this release
    does not know is refused (`StoreUnavailable`): an older release does not touch a newer schema.
    """
    if isinstance(target, ConnectionPool):
        with pg_errors("cannot migrate the database"), target.connection() as connection:
            return _migrate(connection, known)
    return _migrate(target, known)


def _migrate(connection: Connection[Any], known: Sequence[Migration]) -> list[str]:
    applied_now: list[str] = []
    for migration in known:
        with pg_errors(f"migration {migration.label} failed"), connection.transaction():
            # A schema change may wait for readers of the tables it alters, and may take a while on a big log.
            connection.execute("SET LOCAL lock_timeout = '120s'")
            connection.execute("SET LOCAL statement_timeout = 0")
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            connection.execute(_TABLE)
            applied = _applied(connection)
            _refuse_unknown(applied, known)
            if migration.version in applied:
                continue
            connection.execute(migration.path.read_bytes())
            connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
        applied_now.append(migration.label)
    return applied_now


def _applied(connection: Connection[Any]) -> dict[int, str]:
    """`schema_migrations` as {version: name}; empty when the table does not exist."""
    row = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return {}
    return {int(v): str(n) for v, n in connection.execute("SELECT version, name FROM schema_migrations")}


def _refuse_unknown(applied: dict[int, str], known: Sequence[Migration]) -> None:
    mine = {(m.version, m.name) for m in known}
    unknown = [f"{v:04d}_{n}" for v, n in sorted(applied.items()) if (v, n) not in mine]
    if unknown:
        raise StoreUnavailable(
            f"the database has migrations this release does not know ({', '.join(unknown)}):"
            " it belongs to a newer release; upgrade Portcullis rather than migrate it"
        )
