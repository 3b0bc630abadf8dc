"""`portcullis audit verify` against rewrites that keep the chain consistent (issue 12, item 7).

A server run over stdio writes the log and, at shutdown, a signed checkpoint; the tests then
act as someone with file access who edits records and re-hashes every later record, so the
chain itself verifies, and who deletes, truncates or re-signs the external checkpoint copy.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client, StdioServerParameters
from support import make_deployment, portcullis

from gateway.audit.records import chain_hash
from gateway.audit.schema import GENESIS_HASH
from gateway.canonical import canonical_json

pytestmark = pytest.mark.e2e  # the log is written by `portcullis serve` over stdio
_COLUMNS = ("seq", "ts", "event", "call_id", "subject", "tool", "decision", "outcome")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment whose log a real server wrote (calls by carol), with two signed checkpoints."""
    config = make_deployment(tmp_path_factory.mktemp("verify") / "deployment")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "serve", "--transport", "stdio", "--config", str(config), "--as", "carol"],
    )

    async def serve() -> None:
        async with Client(params, mode="legacy") as client:
            for query in ("ada", "grace", "alan", "kat"):
                await client.call_tool("crm.find_customer", {"query": query})

    anyio.run(serve)
    written = portcullis("audit", "checkpoint", "--config", str(config))
    assert written.returncode == 0, written.stderr
    return config


@pytest.fixture
def deployment(live: Path, tmp_path: Path) -> Path:
    """A fresh copy of the live deployment for one test to tamper with."""
    shutil.copytree(live.parent, tmp_path / "copy", ignore=shutil.ignore_patterns("*.log", "data"))
    return tmp_path / "copy" / live.name


def verify(config: Path, *options: str) -> tuple[int, dict[str, Any], str]:
    result = portcullis("audit", "verify", "--config", str(config), "--json", *options)
    return result.returncode, json.loads(result.stdout), result.stderr


def checkpoint_file(config: Path) -> Path:
    return config.parent / "audit" / "checkpoints.jsonl"


def rewrite(config: Path, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Rewrite the whole log through `change` (None drops a record) and re-hash every record."""
    db = sqlite3.connect(config.parent / "audit" / "audit.db")
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TRIGGER audit_extends_chain;")
    contents = [json.loads(body) for (body,) in db.execute("SELECT body FROM audit_log ORDER BY seq")]
    db.execute("DELETE FROM audit_log")
    prev, seq = GENESIS_HASH, 0
    for content in contents:
        changed = change(content)
        if changed is None:
            continue
        seq += 1
        changed["seq"] = seq
        body = canonical_json(changed)
        digest = chain_hash(prev, body)
        db.execute(
            f"INSERT INTO audit_log ({', '.join(_COLUMNS)}, body, prev_hash, hash) VALUES ({', '.join('?' * 11)})",
            (*(changed.get(column) for column in _COLUMNS), body, prev, digest),
        )
        prev = digest
    db.commit()
    db.close()


def carol_becomes_erin(content: dict[str, Any]) -> dict[str, Any]:
    if content.get("subject") == "carol" and content.get("event") == "tool.call":
        return {**content, "subject": "erin"}
    return content


def chain_only(config: Path) -> int:
    """The chain on its own verifies (the rewrite is consistent); return the number of records."""
    from gateway.audit import verify_file

    report = verify_file(config.parent / "audit" / "audit.db")
    assert report.ok, report.problem
    return report.records


def test_a_rewritten_chain_fails_on_the_logs_own_checkpoints_when_the_external_copy_is_deleted(
    deployment: Path,
) -> None:
    rewrite(deployment, carol_becomes_erin)
    chain_only(deployment)
    checkpoint_file(deployment).unlink()
    for options in ((), ("--allow-missing-checkpoints",)):
        code, report, _ = verify(deployment, *options)
        assert code == 1 and report["ok"] is False
        assert "differs from the head signed in checkpoint record" in report["problem"]
    # the signed head the first checkpoint covers is where the rewrite shows
    assert report["first_bad_seq"] is not None and report["first_bad_seq"] > 1


def test_a_log_rewritten_and_re_signed_with_another_key_fails_against_the_configured_key(deployment: Path) -> None:
    forger = Ed25519PrivateKey.generate()
    heads: dict[int, str] = {}

    def resign(content: dict[str, Any]) -> dict[str, Any]:
        content = carol_becomes_erin(content)
        if content.get("event") == "audit.checkpoint":
            signed = {"seq": content["detail"]["seq"], "hash": heads[content["detail"]["seq"]], "ts": content["ts"]}
            signature = base64.b64encode(forger.sign(canonical_json(signed).encode())).decode()
            content = {**content, "detail": {**signed, "signature": signature}}
        # the head this record will have once hashed (records keep their numbers: none is dropped)
        heads[content["seq"]] = chain_hash(heads.get(content["seq"] - 1, GENESIS_HASH), canonical_json(content))
        return content

    rewrite(deployment, resign)
    chain_only(deployment)
    db = sqlite3.connect(deployment.parent / "audit" / "audit.db")
    forged = [
        json.loads(body)["detail"]
        for (body,) in db.execute("SELECT body FROM audit_log WHERE event = 'audit.checkpoint'")
    ]
    db.close()
    assert len(forged) == 2
    checkpoint_file(deployment).write_text("".join(json.dumps(entry) + "\n" for entry in forged))
    code, report, _ = verify(deployment)
    assert code == 1 and "bad signature" in report["problem"]

    checkpoint_file(deployment).unlink()  # the forger also removes the copy: the log's records still fail
    code, report, _ = verify(deployment)
    assert code == 1 and "bad signature" in report["problem"] and "checkpoint record" in report["problem"]


def test_a_missing_external_copy_fails_loudly_unless_allowed_and_a_copy_kept_elsewhere_is_used(
    deployment: Path, tmp_path: Path
) -> None:
    code, report, _ = verify(deployment)
    assert code == 0 and report["checkpoints"] == 2 and report["external_checkpoints"] == 2

    offsite = tmp_path / "offsite" / "checkpoints.jsonl"
    offsite.parent.mkdir()
    shutil.move(checkpoint_file(deployment), offsite)
    code, report, _ = verify(deployment)
    assert code == 1 and report["ok"] is False and report["first_bad_seq"] is None
    assert str(checkpoint_file(deployment)) in report["problem"] and "whole-log rewrite" in report["problem"]

    code, report, stderr = verify(deployment, "--allow-missing-checkpoints")
    assert code == 0 and report["ok"] is True and report["external_checkpoints"] is None
    assert "WARNING" in stderr and str(checkpoint_file(deployment)) in stderr

    code, report, stderr = verify(deployment, "--checkpoints", str(offsite))
    assert code == 0 and report["external_checkpoints"] == 2 and "WARNING" not in stderr


def test_the_log_and_the_external_copy_must_hold_the_same_checkpoints(deployment: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.jsonl"
    shutil.copy(checkpoint_file(deployment), kept)
    lines = kept.read_text().splitlines()

    # the copy lost its newest checkpoint: the log holds one the copy lacks
    checkpoint_file(deployment).write_text(lines[0] + "\n")
    code, report, _ = verify(deployment)
    assert code == 1 and "that" in report["problem"] and "lacks" in report["problem"]
    assert report["first_bad_seq"] == json.loads(lines[1])["seq"]

    # the log lost its newest checkpoint record (its last record); the copy still has it
    shutil.copy(kept, checkpoint_file(deployment))
    last = chain_only(deployment)
    rewrite(deployment, lambda content: None if content["seq"] == last else content)
    chain_only(deployment)
    code, report, _ = verify(deployment)
    assert code == 1 and "the log lacks" in report["problem"]
