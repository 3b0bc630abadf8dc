"""Approval requests: created by the pipeline when policy requires a person to decide."""

from gateway.approvals.requests import (
    TERMINAL,
    ApprovalRequest,
    ApprovalStatus,
    describe,
    later,
    pending_request,
)

__all__ = ["TERMINAL", "ApprovalRequest", "ApprovalStatus", "describe", "later", "pending_request"]
