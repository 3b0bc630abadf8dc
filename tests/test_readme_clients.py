"""The README's client instructions run as written and say what their terms mean (issue 14, item 14)."""

from __future__ import annotations

import re

from support import REPO

README = (REPO / "README.md").read_text()
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def paragraph_of(text: str, term: str) -> str:
    """The paragraph where `term` first appears."""
    start = text.index(term)
    return text[text.rfind("\n\n", 0, start) : text.find("\n\n", start)]


def test_every_npx_command_runs_without_a_prompt() -> None:
    commands = [line.strip() for block in SHELL_BLOCKS for line in block.splitlines() if "npx " in line]
    assert commands, "the README shows the Inspector command"
    assert all(re.match(r"npx -y ", command) for command in commands), commands


def test_the_protocol_eras_are_explained_where_they_first_appear() -> None:
    handshake = paragraph_of(README, "andshake-era")  # "Handshake-era" or "handshake-era", whichever comes first
    assert "initialize" in handshake and "2024-11-05" in handshake
    modern = paragraph_of(README, "2026-07-28 clients")
    assert "no handshake" in modern
