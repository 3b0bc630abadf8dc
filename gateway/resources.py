"""Upstream resources, prompts and completions as a caller may see and ask for them.

Listings show only what policy lets the caller `read` (resources, templates) or `get`
(prompts). A read, get or completion is routed by the federation and run through the
door like a tool call (every stage, audited); the answer is given only when the outcome is ok.
"""

from __future__ import annotations

from collections.abc import Callable

from mcp import types
from pydantic import BaseModel

from gateway.calls import Caller, Governed
from gateway.federation import Federation
from gateway.outcomes import Decision, Outcome
from gateway.ports import CurrentSnapshot, Door
from gateway.sources.mcp_upstream import McpUpstream


class GovernedResources:
    def __init__(self, current: CurrentSnapshot, door: Door, upstreams: Callable[[], list[McpUpstream]]) -> None:
        self._current = current
        self._door = door
        self._upstreams = upstreams

    @property
    def federation(self) -> Federation:
        """Routes over the upstreams' resources and prompts as they are listed now."""
        return Federation(self._upstreams())

    def _permitted(self, caller: Caller, obj: str, action: str) -> bool:
        if not caller.subject:
            return False
        decision = self._current.snapshot.policy.decide(caller.subject, obj, action, granted=caller.granted_roles)
        return decision.decision is not Decision.DENY

    def visible_resources(self, caller: Caller) -> list[types.Resource]:
        return [
            resource
            for route, resource in self.federation.resources()
            if self._permitted(caller, route.policy_object, "read")
        ]

    def visible_resource_templates(self, caller: Caller) -> list[types.ResourceTemplate]:
        return [
            template
            for upstream, template in self.federation.resource_templates()
            if self._permitted(caller, f"{upstream.namespace}.{template.uri_template}", "read")
        ]

    def visible_prompts(self, caller: Caller) -> list[types.Prompt]:
        return [
            prompt for route, prompt in self.federation.prompts() if self._permitted(caller, route.policy_object, "get")
        ]

    async def read_resource(self, caller: Caller, uri: str) -> tuple[Outcome, types.ReadResourceResult | None]:
        outcome, answer = await self._request(caller, self.federation.read(uri))
        return outcome, answer if isinstance(answer, types.ReadResourceResult) else None

    async def get_prompt(
        self, caller: Caller, name: str, arguments: dict[str, str] | None
    ) -> tuple[Outcome, types.GetPromptResult | None]:
        outcome, answer = await self._request(caller, self.federation.get(name, arguments))
        return outcome, answer if isinstance(answer, types.GetPromptResult) else None

    async def complete(
        self,
        caller: Caller,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
    ) -> tuple[Outcome, types.CompleteResult | None]:
        """Completion for an upstream prompt's (policy `get`) or resource template's (policy `read`) argument."""
        outcome, answer = await self._request(caller, self.federation.complete(ref, argument, context))
        return outcome, answer if isinstance(answer, types.CompleteResult) else None

    async def _request(self, caller: Caller, governed: Governed) -> tuple[Outcome, BaseModel | None]:
        outcome, answer = await self._door.request(caller, governed)
        return outcome, answer if isinstance(answer, BaseModel) else None
