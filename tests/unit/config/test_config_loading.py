from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.outcomes import ConfigError

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "portcullis.yaml"
    path.write_text(text)
    return path


def test_the_demo_config_loads_with_paths_relative_to_its_folder() -> None:
    config = load_config(REPO / "portcullis.yaml", environ={})
    assert config.root == REPO
    assert config.resolve(config.audit.path) == REPO / "audit" / "audit.db"
    assert {key.subject for key in config.identity.api_keys} >= {"alice", "bob", "carol", "dave", "erin", "mallory"}
    assert config.server.port == 8787


def test_environment_variables_are_interpolated(tmp_path: Path) -> None:
    path = write(tmp_path, "audit:\n  salt: ${SALT}\nname: ${NAME:-fallback}\n")
    config = load_config(path, environ={"SALT": "s3cret"})
    assert config.audit.salt == "s3cret"
    assert config.name == "fallback"


def test_a_missing_environment_variable_names_the_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\naudit:\n  salt: ${NOT_SET}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems == [f"{path}:3: audit.salt: environment variable NOT_SET is not set"]


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: demo\nserver:\n  port: not-a-port\n  colour: blue\nidentity:\n  api_keys:\n"
        "    - subject: alice\n      sha256: demo-alice\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    problems = raised.value.problems
    assert len(problems) == 3
    assert any(p.startswith(f"{path}:3: server.port:") for p in problems)
    assert f"{path}:4: server.colour: unknown setting" in problems
    assert any(p.startswith(f"{path}:8: identity.api_keys.0.sha256:") and "not the key itself" in p for p in problems)


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nserver: [unclosed\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems[0].startswith(f"{path}:")
    assert "invalid YAML" in raised.value.problems[0]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read config" in raised.value.problems[0]
