"""Resources and prompts of upstream MCP servers, namespaced and routed.

Resource URIs stay as their upstream wrote them (clients and models rely on
them); each is owned by one upstream, and its policy object is
`namespace.URI` (so `kb.*` in a rule covers the namespace's tools, resources
and prompts alike; the action tells them apart: `call`, `read`, `get`).
Prompts are renamed `namespace.prompt`, like tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mcp.types as types

from gateway.sources.mcp_upstream import McpUpstream


@dataclass(frozen=True)
class ResourceRoute:
    upstream: McpUpstream
    uri: str

    @property
    def policy_object(self) -> str:
        return f"{self.upstream.namespace}.{self.uri}"


@dataclass(frozen=True)
class PromptRoute:
    upstream: McpUpstream
    name: str
    """The upstream's own name for the prompt."""

    @property
    def policy_object(self) -> str:
        return f"{self.upstream.namespace}.{self.name}"


class Federation:
    """Listings and routes over the upstreams' current resources and prompts."""

    def __init__(self, upstreams: list[McpUpstream]) -> None:
        self._upstreams = upstreams

    def resources(self) -> list[tuple[ResourceRoute, types.Resource]]:
        seen: set[str] = set()
        listed = []
        for upstream in self._upstreams:
            for resource in upstream.resources:
                if resource.uri in seen:
                    continue  # the first upstream to list a URI owns it
                seen.add(resource.uri)
                renamed = resource.model_copy(update={"name": f"{upstream.namespace}.{resource.name}"})
                listed.append((ResourceRoute(upstream, resource.uri), renamed))
        return listed

    def resource_templates(self) -> list[tuple[McpUpstream, types.ResourceTemplate]]:
        return [
            (upstream, template.model_copy(update={"name": f"{upstream.namespace}.{template.name}"}))
            for upstream in self._upstreams
            for template in upstream.resource_templates
        ]

    def route_resource(self, uri: str) -> ResourceRoute | None:
        for route, _ in self.resources():
            if route.uri == uri:
                return route
        for upstream in self._upstreams:
            for template in upstream.resource_templates:
                if template_matches(template.uri_template, uri):
                    return ResourceRoute(upstream, uri)
        return None

    def prompts(self) -> list[tuple[PromptRoute, types.Prompt]]:
        return [
            (
                PromptRoute(upstream, prompt.name),
                prompt.model_copy(update={"name": f"{upstream.namespace}.{prompt.name}"}),
            )
            for upstream in self._upstreams
            for prompt in upstream.prompts
        ]

    def route_prompt(self, name: str) -> PromptRoute | None:
        namespace, _, original = name.partition(".")
        for upstream in self._upstreams:
            if upstream.namespace == namespace and any(p.name == original for p in upstream.prompts):
                return PromptRoute(upstream, original)
        return None

    def route_template(self, uri_template: str) -> McpUpstream | None:
        for upstream in self._upstreams:
            if any(t.uri_template == uri_template for t in upstream.resource_templates):
                return upstream
        return None


def template_matches(template: str, uri: str) -> bool:
    """Whether `uri` is an expansion of a simple RFC 6570 template (`{var}`, `{+var}`)."""
    pattern = ""
    for literal, expression in re.findall(r"([^{]*)(\{[^}]*\})?", template):
        pattern += re.escape(literal)
        if expression:
            pattern += ".+" if expression.startswith(("{+", "{#")) else "[^/?#]+"
    return re.fullmatch(pattern, uri) is not None
