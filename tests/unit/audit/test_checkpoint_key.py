"""The checkpoint signing key: processes starting at once agree on one key; replicas are never given a new one."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.audit.checkpoints import load_or_create_key, load_public_key, public_key_path


def public_of(path: str) -> bytes:
    key = load_or_create_key(Path(path))
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "checkpoint.key"
    with ProcessPoolExecutor(6) as pool:
        publics = set(pool.map(public_of, [str(path)] * 12))
    assert len(publics) == 1  # one key, whichever process made it
    written = load_public_key(public_key_path(path)).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert publics == {written}  # and the .pub beside it is that key's
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.key", "checkpoint.pub"]  # no drafts left


def test_a_replica_without_the_shared_key_is_told_how_to_get_it(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    with pytest.raises(ValueError, match=r"audit.checkpoint_key: no signing key at .*`portcullis db init` creates it"):
        load_or_create_key(path, create=False)
    assert not path.exists()
