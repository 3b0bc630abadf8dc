"""Approval requests: created by the pipeline when policy requires a person to decide."""

from gateway.approvals.requests import ApprovalRequest, ApprovalStatus, list_requests, pending_request

__all__ = ["ApprovalRequest", "ApprovalStatus", "list_requests", "pending_request"]
