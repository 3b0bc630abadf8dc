"""Tool definitions from upstreams: hidden characters, instructions to the model, references to
other tools or to sensitive files ("tool poisoning"). A finding quarantines the tool at catalog time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.guardrails.detectors.injection import assess
from gateway.guardrails.text import hidden_characters

SENSITIVE_FILES = re.compile(
    r"(?:~|\$HOME)/\.(?:ssh|aws|gnupg|kube|docker|config/gh)|\bid_(?:rsa|ed25519|ecdsa)\b|/etc/(?:passwd|shadow|sudoers)"
    r"|\.env\b|\bmcp\.json\b|claude_desktop_config|\bcredentials(?:\.json)?\b|\.netrc\b|\.npmrc\b|\.pypirc\b",
    re.IGNORECASE,
)
_DIRECTIVE = re.compile(
    r"<(?:important|instructions?|system)>|\b(?:before|after|instead of) (?:using|calling) this tool\b"
    r"|\bdo not (?:tell|mention|inform|show)\b.{0,30}\b(?:user|human)\b|\b(?:don't|do not) (?:tell|mention)\b",
    re.IGNORECASE,
)


def _texts(definition: dict[str, Any], path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(definition, dict):
        for key, value in definition.items():
            yield from _texts(value, f"{path}.{key}")
            if isinstance(key, str):
                yield f"{path}.{key}(key)", key
    elif isinstance(definition, list):
        for index, value in enumerate(definition):
            yield from _texts(value, f"{path}[{index}]")
    elif isinstance(definition, str):
        yield path, definition


def inspect_definition(name: str, definition: dict[str, Any], other_tools: Iterable[str]) -> list[dict[str, str]]:
    """Findings (rule, message, path) for one tool's description, schemas and annotations.

    `other_tools` are the tools of the other sources: an upstream naming its own tools is ordinary.
    """
    findings = []
    names = {n for n in other_tools if n != name}
    bare = {n.rsplit(".", 1)[-1]: n for n in names if "_" in n.rsplit(".", 1)[-1]}
    for path, text in _texts(definition):
        if hidden_characters(text):
            findings.append({"rule": "definition.hidden_text", "path": path, "message": "hidden Unicode characters"})
        if SENSITIVE_FILES.search(text):
            findings.append(
                {"rule": "definition.sensitive_file", "path": path, "message": "refers to a sensitive file"}
            )
        if _DIRECTIVE.search(text) or assess(text) is not None:
            findings.append(
                {"rule": "definition.instructions", "path": path, "message": "instructions aimed at the model"}
            )
        words = set(re.findall(r"[A-Za-z0-9_.-]+", text))
        referenced = sorted(
            {
                full
                for word in words
                for full in ([word] if word in names else []) + ([bare[word]] if word in bare else [])
            }
        )
        if referenced:
            findings.append(
                {
                    "rule": "definition.other_tool",
                    "path": path,
                    "message": f"refers to other tools: {', '.join(referenced)}",
                }
            )
    return findings
