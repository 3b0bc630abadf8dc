"""The PostgreSQL implementations of the store protocols, for several replicas sharing one database.

- `connect.py`: the process's connection pool, from the configured DSN (never logged in clear).
- `errors.py`: psycopg's exceptions mapped to the typed faults of `store/errors.py`.
- `migrate.py` and `migrations/`: the versioned schema `portcullis db init` creates.
- `audit_log.py`, `plan_runs.py`, `approvals.py`, `rate_buckets.py`, `flow_labels.py`: the stores.

Nothing is imported here: the SQLite default never loads psycopg.
"""
