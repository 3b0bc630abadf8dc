"""Hot reload: build new, validate, swap one reference; never a wrong decision in between."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest
from support import make_deployment

from gateway import Gateway, OutcomeCode
from gateway.config import load_config
from gateway.pipeline import Caller

pytestmark = pytest.mark.anyio
ALICE = Caller(subject="alice", auth="test", transport="test")
GRANT = "p, alice, faulty.echo, call, deny\n"


def records(path: Path, where: str) -> list[dict[str, object]]:
    db = sqlite3.connect(path.parent / "audit" / "audit.db")
    rows = db.execute(f"SELECT body FROM audit_log WHERE {where} ORDER BY seq").fetchall()
    db.close()
    return [json.loads(body) for (body,) in rows]


async def test_a_valid_change_applies_at_once_and_is_audited(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d", changes={"policy": {"watch_seconds": 0}})
    policy = path.parent / "policies" / "policy.csv"
    async with Gateway(load_config(path)) as gateway:
        before = gateway.snapshot.policy.version
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})).code is OutcomeCode.OK
        policy.write_text(policy.read_text() + GRANT)
        assert await gateway.reload() is True
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})).code is OutcomeCode.UNKNOWN_TOOL
        after = gateway.snapshot.policy.version
    assert before != after
    (reload,) = records(path, "event = 'policy.reload'")
    assert reload["policy_version"] == after and reload["detail"]["previous_policy_version"] == before


async def test_an_invalid_change_leaves_the_running_policy_in_force(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d", changes={"policy": {"watch_seconds": 0}})
    policy = path.parent / "policies" / "policy.csv"
    async with Gateway(load_config(path)) as gateway:
        version = gateway.snapshot.policy.version
        policy.write_text(policy.read_text() + GRANT + "p, alice, faulty.*, call, allow, when args.text ==\n")
        assert await gateway.reload() is False
        assert gateway.snapshot.policy.version == version
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})).code is OutcomeCode.OK
    (failed,) = records(path, "event = 'policy.reload_failed'")
    assert failed["outcome"] == "refused" and "invalid condition" in failed["detail"]["problems"][0]


async def test_a_changed_file_is_picked_up_by_the_watcher(tmp_path: Path) -> None:
    path = make_deployment(tmp_path / "d", changes={"policy": {"watch_seconds": 0.05}})
    policy = path.parent / "policies" / "policy.csv"
    async with Gateway(load_config(path)) as gateway:
        version = gateway.snapshot.policy.version
        policy.write_text(policy.read_text() + GRANT)
        with anyio.fail_after(10):
            while gateway.snapshot.policy.version == version:
                await anyio.sleep(0.05)
        assert (await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})).code is OutcomeCode.UNKNOWN_TOOL


@pytest.mark.slow
async def test_reloading_under_load_never_gives_a_decision_the_policy_in_force_would_not(tmp_path: Path) -> None:
    """Calls run while the policy flips between 'alice may echo' and 'alice may not' 40 times."""
    path = make_deployment(tmp_path / "d", changes={"policy": {"watch_seconds": 0}})
    policy = path.parent / "policies" / "policy.csv"
    allowing = policy.read_text()
    denying = allowing + GRANT
    versions: dict[str, bool] = {}
    async with Gateway(load_config(path)) as gateway:
        versions[gateway.snapshot.policy.version] = True
        done = anyio.Event()

        async def caller() -> None:
            while not done.is_set():
                await gateway.call_tool(ALICE, "faulty.echo", {"text": "x"})

        async with anyio.create_task_group() as tasks:
            for _ in range(16):
                tasks.start_soon(caller)
            for flip in range(40):
                policy.write_text(denying if flip % 2 == 0 else allowing)
                assert await gateway.reload()
                versions[gateway.snapshot.policy.version] = flip % 2 == 1
                await anyio.sleep(0.01)
            done.set()
    calls = records(path, "event = 'tool.call' AND tool = 'faulty.echo'")
    assert len(calls) > 100
    wrong = [c for c in calls if (c["outcome"] == "ok") != versions[str(c["policy_version"])]]
    assert wrong == []
    assert {str(c["policy_version"]) for c in calls} == set(versions)
