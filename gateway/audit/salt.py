"""The audit salt: the key of the HMAC that hides secret and personal argument values.

It lives outside the database (config, an environment reference, or a 0600 key file
created on first start), like the checkpoint key: whoever is handed the database cannot
confirm a guessed email address against its hash, and deleting the salt file erases what
the hashes could be linked to while the chain still verifies. Databases written before
this kept the salt in table `meta`; `resolve_salt` moves it out to the file.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

logger = logging.getLogger(__name__)

_ID_LABEL = b"portcullis audit salt id"


@dataclass(frozen=True)
class Salt:
    value: str
    source: str
    """`config` (audit.salt, possibly `${ENV}`), `file` (the salt file) or `new file` (just created)."""

    @property
    def id(self) -> str:
        """A fingerprint that names the salt in the log without revealing it (HMAC of a fixed label)."""
        return hmac.new(self.value.encode(), _ID_LABEL, sha256).hexdigest()[:16]


def default_salt_file(database: Path) -> Path:
    """Where the salt is kept when nobody says: beside the database, never inside it."""
    return database.with_suffix(".salt")


def resolve_salt(connection: sqlite3.Connection, configured: str | None, salt_file: Path) -> Salt:
    """The salt to hash with: the configured one, else the file's (created 0600 if missing).

    A salt left in table `meta` by an older version is moved into the file first (when there
    is no file yet), so that hashes recorded before stay comparable; see `migrate_meta_salt`.
    """
    migrate_meta_salt(connection, salt_file)
    if configured:
        return Salt(configured, "config")
    if salt_file.exists():
        return Salt(read_salt_file(salt_file), "file")
    return Salt(create_salt_file(salt_file), "new file")


def read_salt_file(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"the audit salt file {path} is empty")
    return value


def create_salt_file(path: Path, value: str | None = None) -> str:
    """Write `value` (default: a new random salt) with mode 0600, unless the file exists; return the file's salt.

    The salt is written to a temporary file and linked into place: a reader never sees half a
    salt, and of two processes starting at once the first one's salt wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            out.write((value or secrets.token_hex(16)) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # link never replaces
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return read_salt_file(path)


def migrate_meta_salt(connection: sqlite3.Connection, salt_file: Path) -> None:
    """Move a salt stored in `meta` by an older version out to `salt_file`, and erase it from the database.

    If the file already holds another salt, the file wins and the row is left (nothing is
    lost); `audit verify` reports it as a finding.
    """
    row = connection.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
    if row is None:
        return
    stored = str(row[0])
    if create_salt_file(salt_file, stored) != stored:
        logger.warning(
            "table meta holds an audit salt that differs from the one in %s: the file wins; records hashed"
            " with the old salt no longer compare with new ones (the row is kept, audit verify reports it)",
            salt_file,
        )
        return
    # secure_delete zeroes the row's bytes; the checkpoint then empties the WAL that held older copies.
    (secure,) = connection.execute("PRAGMA secure_delete").fetchone()
    connection.execute("PRAGMA secure_delete=ON")
    connection.execute("DELETE FROM meta WHERE key = 'salt'")
    connection.execute(f"PRAGMA secure_delete={int(secure)}")
    busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        logger.warning("the audit salt was removed from table meta, but a reader kept the WAL from being emptied")


def stored_salt_finding(connection: sqlite3.Connection) -> str | None:
    """A warning when the database still holds a salt in clear (for `audit verify`)."""
    try:
        row = connection.execute("SELECT 1 FROM meta WHERE key = 'salt'").fetchone()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    return (
        "table meta still holds the audit salt in clear: anyone with the database can confirm a guessed"
        " secret or personal value against its hash; start the gateway once to move it to audit.salt_file"
        " (or delete the row if the file already holds the salt in use)"
    )
