"""Plan runs as the planner and its CLI name them.

A run is a row per run and per step, and every transition is written together with an
audit record of it (`plan.started`, `plan.step`, `plan.finished`), so the state and its
history cannot disagree. The store behind them is a `PlanRunStore` (store/protocols.py;
the SQL is in store/sqlite/plan_runs.py). A run belongs to the gateway process running
it, under a lease that process renews; a run whose lease ran out (or whose process is
gone) is marked `interrupted` by a serving gateway, with a record saying so: it is never
silently lost, and a live run is never taken.
"""

from gateway.store.plan_runs import RunLease, RunRecord, RunStatus, StepRecord, StepStatus
from gateway.store.sqlite.plan_runs import list_runs, read_run

__all__ = ["RunLease", "RunRecord", "RunStatus", "StepRecord", "StepStatus", "list_runs", "read_run"]
