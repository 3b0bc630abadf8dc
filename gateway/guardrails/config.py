"""Pydantic models of `guardrails.yaml`: which detectors run on which tools, and what a finding does."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config.loader import Location, did_you_mean
from gateway.guardrails.addresses import AddressPolicy
from gateway.guardrails.detectors import BUILTIN, GROUPS

ArgumentAction = Literal["block", "redact", "require_approval", "flag"]
OutputAction = Literal["block", "redact", "annotate", "flag"]
Label = Literal["private_data", "untrusted_content", "external_sink"]
Kind = Literal["url", "path", "command", "email", "text"]
SEVERITY = {"flag": 0, "annotate": 1, "redact": 2, "require_approval": 3, "block": 4}
"""When two rules give one detector different actions, the stricter wins."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolRule(_Model):
    tools: tuple[str, ...]
    """Tool name globs (`email.send`, `crm.*`)."""
    arguments: dict[str, ArgumentAction] = Field(default_factory=dict)
    """Detector name -> action, for the call's arguments."""
    outputs: dict[str, OutputAction] = Field(default_factory=dict)
    """Detector name -> action, for the tool's result."""
    kinds: dict[str, Kind] = Field(default_factory=dict)
    """Argument name -> kind, so URL, path and command guards know where to look."""
    root: Path | None = None
    """The folder path-kind arguments must stay in (relative to the deployment)."""
    labels: tuple[Label, ...] = ()
    high_risk: bool = False
    """A detector that fails or runs out of time always blocks this tool's calls."""
    on_error: Literal["block", "flag"] | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    def applies_to(self, tool: str) -> bool:
        return any(fnmatchcase(tool, pattern) for pattern in self.tools)


class UrlSettings(_Model):
    schemes: tuple[str, ...] = ("https",)
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()

    def policy(self) -> AddressPolicy:
        return AddressPolicy(self.schemes, self.allow_hosts, self.deny_hosts, self.allow_networks)


class MarkupSettings(_Model):
    allow_hosts: tuple[str, ...] = ()


class InjectionSettings(_Model):
    threshold: float = Field(default=1.0, gt=0)


class PersonalSettings(_Model):
    phone_region: str = "US"
    """The region numbers without a country code are read in."""


class FlowRule(_Model):
    """Once a session has read every label in `after`, a call to a `sink` tool needs approval (or is blocked)."""

    after: tuple[Label, ...] = ("private_data", "untrusted_content")
    sink: Label = "external_sink"
    action: Literal["require_approval", "block"] = "require_approval"


class RateLimit(_Model):
    """A token bucket per subject and tool: `rate` calls per `per_seconds`, bursts up to `burst`."""

    subjects: tuple[str, ...] = ("*",)
    tools: tuple[str, ...] = ("*",)
    rate: float = Field(gt=0)
    per_seconds: float = Field(default=60, gt=0)
    burst: int | None = Field(default=None, ge=1)

    @field_validator("subjects", "tools", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    def applies_to(self, subject: str, tool: str) -> bool:
        return any(fnmatchcase(subject, s) for s in self.subjects) and any(fnmatchcase(tool, t) for t in self.tools)


class DefinitionChecks(_Model):
    enabled: bool = True
    exempt: tuple[str, ...] = ()
    """Upstream tools an operator reviewed and accepts despite findings (exact names)."""


SENSITIVE_FIELD_WORDS = (
    "secret",
    "credential",
    "password",
    "passphrase",
    "passcode",
    "api key",
    "access key",
    "private key",
    "secret key",
    "token",
    "card number",
    "credit card",
    "cvv",
    "cvc",
    "security code",
    "pin",
    "ssn",
    "social security",
    "one-time code",
    "otp",
    "2fa",
    "mfa",
)
"""Words (matched on whole words, identifiers split) that make an elicitation form ask for a secret."""


class ElicitationSettings(_Model):
    """What an upstream may ask the user through the calling client (when policy lets it elicit at all)."""

    block_sensitive_fields: bool = True
    """Refuse forms whose message or fields ask for secrets, credentials, keys, card numbers, PINs, SSNs."""
    sensitive_words: tuple[str, ...] = SENSITIVE_FIELD_WORDS
    allow_url_hosts: tuple[str, ...] = ()
    """Hosts (globs) a URL-mode elicitation may send the user to; any other URL is refused."""


def _sampling_detectors() -> dict[str, ArgumentAction]:
    return {"secrets": "block", "personal": "block", "injection": "block"}


class SamplingSettings(_Model):
    """Limits on an upstream's use of the calling client's model (when policy lets it sample at all)."""

    max_tokens: int = Field(default=1024, ge=1)
    """A request asking for more is refused (not clamped: the upstream learns its request was too big)."""
    max_message_bytes: int = Field(default=65_536, ge=1)
    """The request's messages and system prompt, as JSON."""
    max_requests_per_call: int = Field(default=3, ge=0)
    """Sampling requests one tool call may make; the next one is refused."""
    detectors: dict[str, ArgumentAction] = Field(default_factory=_sampling_detectors)
    """Detectors run on the messages, beside the tool's own `arguments` rules (the stricter action wins)."""


class RelaySettings(_Model):
    """Requests an upstream MCP server sends back through the gateway to the calling client."""

    elicitation: ElicitationSettings = ElicitationSettings()
    sampling: SamplingSettings = SamplingSettings()


class GuardrailsConfig(_Model):
    version: Literal[1] = 1
    approver: str = "role:security"
    """Who approves calls a guardrail or a flow rule sends to the approval queue."""
    on_error: Literal["block", "flag"] = "block"
    """A detector that fails or exceeds its budget: block (fail closed) or flag."""
    budget_ms: float = Field(default=50, gt=0)
    """Each detector's time budget per value; URL resolution has the same budget."""
    plugins: dict[str, str] = Field(default_factory=dict)
    """Extra detectors: name -> `file.py:attribute` (relative to this file) naming a detector or a class."""
    urls: UrlSettings = UrlSettings()
    markup: MarkupSettings = MarkupSettings()
    injection: InjectionSettings = InjectionSettings()
    personal: PersonalSettings = PersonalSettings()
    rules: tuple[ToolRule, ...] = ()
    flows: tuple[FlowRule, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    definitions: DefinitionChecks = DefinitionChecks()
    relay: RelaySettings = RelaySettings()

    def cross_check(self) -> list[tuple[Location, str]]:
        """Every detector a rule or the relay names must be built in, a group, or one of this file's plugins
        (the loader reports each with its line)."""
        known = {*BUILTIN, *GROUPS, *self.plugins}
        named: list[tuple[Location, str]] = [
            (("rules", index, direction, name), name)
            for index, rule in enumerate(self.rules)
            for direction, actions in (("arguments", rule.arguments), ("outputs", rule.outputs))
            for name in actions
        ]
        named += [(("relay", "sampling", "detectors", name), name) for name in self.relay.sampling.detectors]
        listed = ", ".join(sorted(known))
        return [
            (loc, f"unknown detector {name!r}{did_you_mean(name, known)} (known: {listed})")
            for loc, name in named
            if name not in known
        ]

    @property
    def asks_for_approval(self) -> bool:
        """Whether any rule or flow can send a call to `approver` (only then must someone hold that role)."""
        in_rules = any("require_approval" in rule.arguments.values() for rule in self.rules)
        return in_rules or any(flow.action == "require_approval" for flow in self.flows)
