"""The built-in detectors, by the names `guardrails.yaml` uses."""

from __future__ import annotations

from gateway.guardrails.detectors.base import Detector, Direction, Hit, Where
from gateway.guardrails.detectors.injection import Injection
from gateway.guardrails.detectors.markup import Markup
from gateway.guardrails.detectors.network import Commands, Paths, Urls
from gateway.guardrails.detectors.personal import Cards, Emails, Ibans, NationalIds, Phones
from gateway.guardrails.detectors.secrets import Secrets

BUILTIN: dict[str, Detector] = {
    d.name: d
    for d in (
        Secrets(),
        Emails(),
        Phones(),
        Cards(),
        Ibans(),
        NationalIds(),
        Urls(),
        Paths(),
        Commands(),
        Injection(),
        Markup(),
    )
}
GROUPS: dict[str, tuple[str, ...]] = {"personal": ("emails", "phones", "cards", "ibans", "national_ids")}
"""Names that stand for several detectors."""

__all__ = ["BUILTIN", "GROUPS", "Detector", "Direction", "Hit", "Where"]
