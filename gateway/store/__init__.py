"""The state that must survive a process, behind small protocols, and the faults of the stores that keep it.

- `protocols.py`: what a store must do (the audit log, plan runs, rate-limit buckets, flow labels);
  one contract suite (`tests/contract/`) holds every implementation to it.
- `changes.py`: the opaque change a store builds and the audit log commits with a record.
- `errors.py`: store faults, typed once; `sqlite/errors.py` maps the driver's exceptions to them.
- `plan_runs.py`: the plan-run records every implementation returns.
- `owner.py`: the id a process holds leases under, and whether a holder on this machine is gone.
- `sqlite/`: the SQLite implementations (the audit log's writer is `gateway/audit/store.py`).

Nothing is imported here, so that importing one store module loads no other.
"""
