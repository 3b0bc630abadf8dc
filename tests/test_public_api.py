"""The tool author's API: what `gateway` exports, and that importing it stays light."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import gateway

HEAVY = ("mcp", "uvicorn", "casbin", "starlette", "pydantic", "httpx", "anyio")


def test_all_is_the_tool_authors_api_sorted() -> None:
    assert gateway.__all__ == ["ToolContext", "tool"]
    assert gateway.__all__ == sorted(gateway.__all__)
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None


def test_embedding_names_stay_importable_from_their_modules() -> None:
    from gateway import CheckReport, Decision, Gateway, Outcome, OutcomeCode
    from gateway.calls import CheckReport as Defined
    from gateway.gateway import Gateway as Wiring
    from gateway.outcomes import Decision as D
    from gateway.outcomes import Outcome as O
    from gateway.outcomes import OutcomeCode as C

    assert (CheckReport, Decision, Gateway, Outcome, OutcomeCode) == (Defined, D, Wiring, O, C)
    with pytest.raises(AttributeError):
        _ = gateway.NoSuchName


def test_the_tool_context_offers_what_a_tool_author_needs_and_no_internal_objects() -> None:
    fields = [field.name for field in dataclasses.fields(gateway.ToolContext)]
    assert fields == ["subject", "roles", "settings", "root", "call_id", "progress", "relay"]


def test_importing_the_tool_api_loads_no_sdk_server_or_policy_engine() -> None:
    probe = (
        "import json, sys\n"
        "from gateway import tool, ToolContext\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(loaded.stdout) == []
