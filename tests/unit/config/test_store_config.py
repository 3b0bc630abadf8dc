"""`store:` in portcullis.yaml: SQLite by default; PostgreSQL with a DSN that comes from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.outcomes import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "portcullis.yaml"
    path.write_text(text)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ or {})
    return raised.value.problems


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "name: demo\n"), environ={})
    assert config.store.backend == "sqlite" and config.store.dsn is None


def test_postgresql_takes_its_dsn_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "audit: {salt: s}\nstore:\n  backend: postgresql\n  dsn: ${PORTCULLIS_DATABASE_URL}\n")
    url = "postgresql://portcullis:pw@db.internal:5432/portcullis"
    config = load_config(path, environ={"PORTCULLIS_DATABASE_URL": url})
    assert config.store.backend == "postgresql" and config.store.dsn == url
    assert "pw" not in repr(config.store)  # a config printed in a log does not show the password


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://portcullis:hunter2@db/portcullis", "host=db dbname=portcullis user=app password=hunter2"],
)
def test_a_password_written_in_the_file_is_refused_with_the_fix(tmp_path: Path, dsn: str) -> None:
    path = write(tmp_path, f"name: demo\nstore:\n  backend: postgresql\n  dsn: '{dsn}'\n")
    assert problems(path) == [
        f"{path}:4: store.dsn: holds a password in clear: write ${{PORTCULLIS_DATABASE_URL}} and set the variable"
    ]


def test_a_dsn_without_a_password_may_be_written_in_the_file(tmp_path: Path) -> None:
    text = "audit: {salt: s}\nstore:\n  backend: postgresql\n  dsn: host=/run/postgresql dbname=portcullis\n"
    path = write(tmp_path, text)
    assert load_config(path, environ={}).store.dsn == "host=/run/postgresql dbname=portcullis"


def test_postgresql_without_a_dsn_says_what_to_write(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "store:\n  backend: postgresql\n"))
    assert "store" in problem and "backend postgresql needs dsn" in problem


def test_an_unknown_backend_is_named(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "store:\n  backend: mysql\n"))
    assert f"{tmp_path / 'portcullis.yaml'}:2: store.backend" in problem and "postgresql" in problem


def test_postgresql_needs_one_audit_salt_for_every_replica(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nstore:\n  backend: postgresql\n  dsn: host=/run/postgresql dbname=p\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:3: store.backend: replicas on postgresql need one audit salt")
    assert "audit.salt: ${PORTCULLIS_AUDIT_SALT}" in problem
