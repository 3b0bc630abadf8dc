"""Portcullis: a policy-governed tool gateway exposed as an MCP server.

What tool authors import: the `tool` decorator and the `ToolContext` a tool may ask for.
"""

from gateway.gateway import CheckReport, Gateway
from gateway.outcomes import Decision, Outcome, OutcomeCode
from gateway.sources.base import ToolContext
from gateway.sources.python import tool

__all__ = ["CheckReport", "Decision", "Gateway", "Outcome", "OutcomeCode", "ToolContext", "tool"]
