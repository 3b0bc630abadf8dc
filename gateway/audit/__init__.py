"""The append-only, hash-chained audit log (and the database it shares with approvals)."""

from gateway.audit.query import AuditQuery, open_readonly, parse_since, query_records
from gateway.audit.records import AuditRecord, chain_hash, redact_arguments, utc_now
from gateway.audit.store import AuditStore, StaleState, Statement, open_database
from gateway.audit.verify import VerifyReport, verify_chain, verify_file

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
