"""Kind-specific guards: URLs (SSRF), file paths, and shell commands."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

from gateway.guardrails.addresses import AddressPolicy, AddressRefused, check_url
from gateway.guardrails.detectors.base import Hit, Where


class Urls:
    """A URL-kind argument must point at a public address (every resolved address), with an allowed scheme."""

    name = "urls"
    kinds = frozenset({"url"})

    async def scan(self, text: str, where: Where) -> Sequence[Hit]:
        settings = getattr(where.settings, "urls", None)
        policy = settings.policy() if settings is not None else AddressPolicy()
        try:
            await check_url(text, policy)
        except AddressRefused as exc:
            return [Hit(exc.rule, str(exc), placeholder="<URL>")]
        return ()


class Paths:
    """A path-kind argument, decoded and resolved (symlinks too), must stay inside the tool's root."""

    name = "paths"
    kinds = frozenset({"path"})

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        decoded = text
        for _ in range(3):  # %252e%252e decodes twice
            step = unquote(decoded)
            if step == decoded:
                break
            decoded = step
        if "\x00" in decoded:
            return [Hit("paths.nul", "the path contains a NUL byte", placeholder="<PATH>")]
        if where.root is None:
            return [
                Hit("paths.no_root", "the tool has no root folder configured for path arguments", placeholder="<PATH>")
            ]
        root = Path(where.root).resolve()
        candidate = Path(os.path.expanduser(decoded)) if decoded.startswith("~") else Path(decoded)
        resolved = (root / candidate).resolve()  # an absolute candidate replaces the root, then fails the check
        if not resolved.is_relative_to(root):
            return [Hit("paths.outside_root", "the path leads outside the tool's root folder", placeholder="<PATH>")]
        return ()


_METACHARACTERS = re.compile(r"[;&|`$<>\n\r(){}\\*?!#~]|\.\./")


class Commands:
    """Command-kind arguments: no shell metacharacters, and no value that a program would read as an option."""

    name = "commands"
    kinds = frozenset({"command"})

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        hits = []
        if text.lstrip().startswith("-"):
            hits.append(Hit("commands.option_injection", "a value starts with '-' and would be read as an option"))
        match = _METACHARACTERS.search(text)
        if match:
            hits.append(Hit("commands.metacharacter", f"shell metacharacter {match.group()!r} in a command argument"))
        return hits
