"""The append-only, hash-chained audit log (and the database it shares with approvals).

Names load on first use: a reader (`portcullis audit query`) needs the query module only, not the
writer's thread and asyncio (`store`) nor the checkpoint signatures' cryptography (`verify`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.audit.query import AuditQuery as AuditQuery
    from gateway.audit.query import open_readonly as open_readonly
    from gateway.audit.query import parse_since as parse_since
    from gateway.audit.query import query_records as query_records
    from gateway.audit.records import AuditRecord as AuditRecord
    from gateway.audit.records import chain_hash as chain_hash
    from gateway.audit.records import redact_arguments as redact_arguments
    from gateway.audit.records import utc_now as utc_now
    from gateway.audit.store import AuditStore as AuditStore
    from gateway.audit.store import StaleState as StaleState
    from gateway.audit.store import Statement as Statement
    from gateway.audit.store import open_database as open_database
    from gateway.audit.verify import VerifyReport as VerifyReport
    from gateway.audit.verify import verify_chain as verify_chain
    from gateway.audit.verify import verify_file as verify_file

_LAZY = {
    "AuditQuery": "query",
    "open_readonly": "query",
    "parse_since": "query",
    "query_records": "query",
    "AuditRecord": "records",
    "chain_hash": "records",
    "redact_arguments": "records",
    "utc_now": "records",
    "AuditStore": "store",
    "StaleState": "store",
    "Statement": "store",
    "open_database": "store",
    "VerifyReport": "verify",
    "verify_chain": "verify",
    "verify_file": "verify",
}
"""Each exported name and the submodule (`gateway.audit.<module>`) that defines it."""

__all__ = [
    "AuditQuery",
    "AuditRecord",
    "AuditStore",
    "StaleState",
    "Statement",
    "VerifyReport",
    "chain_hash",
    "open_database",
    "open_readonly",
    "parse_since",
    "query_records",
    "redact_arguments",
    "utc_now",
    "verify_chain",
    "verify_file",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.audit' has no attribute {name!r}")
    return getattr(import_module(f"gateway.audit.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
