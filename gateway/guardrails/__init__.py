"""Guardrails: detectors on arguments, outputs and tool definitions; flow labels; rate limits."""

from gateway.guardrails.config import GuardrailsConfig
from gateway.guardrails.engine import Guardrails, ScanReport, ToolGuard

__all__ = ["Guardrails", "GuardrailsConfig", "ScanReport", "ToolGuard"]
