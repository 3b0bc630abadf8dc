"""What travels through the pipeline: defined in `gateway.calls` (below the pipeline), named here too."""

from __future__ import annotations

from gateway.calls import CallContext, Caller, Continue, Fetch, Finding, PlanLink, Request, Stage, Stop

__all__ = ["CallContext", "Caller", "Continue", "Fetch", "Finding", "PlanLink", "Request", "Stage", "Stop"]
