"""One replica signs the periodic checkpoints: the holder of an advisory lock, taken over when it dies."""

from __future__ import annotations

import psycopg
import pytest

from gateway.store.postgres.leader import PgLeader

pytestmark = pytest.mark.anyio


async def test_one_replica_holds_the_turn_until_it_lets_go(pg_dsn: str) -> None:
    first, second = PgLeader(pg_dsn), PgLeader(pg_dsn)
    try:
        assert await first.is_mine()
        assert not await second.is_mine()
        assert await first.is_mine()  # asked again: still its turn
        await first.release()
        assert await second.is_mine()
        assert not await first.is_mine()
    finally:
        await first.release()
        await second.release()


async def test_a_replica_that_dies_hands_the_turn_on(pg_dsn: str) -> None:
    first, second = PgLeader(pg_dsn), PgLeader(pg_dsn)
    try:
        assert await first.is_mine()
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # its session ends as a crashed process's would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                " AND pid <> pg_backend_pid()",
                ("portcullis-leader",),
            )
        assert await second.is_mine()
        assert not await first.is_mine()  # it notices it lost the lock, and does not sign
    finally:
        await first.release()
        await second.release()


async def test_an_unreachable_database_means_not_my_turn(tmp_path: object) -> None:
    leader = PgLeader("host=127.0.0.1 port=1 dbname=nothing connect_timeout=1")
    assert not await leader.is_mine()
