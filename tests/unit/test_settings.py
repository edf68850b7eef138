"""Settings: defaults, and a clear refusal of values aimm cannot use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infrastructure.settings import Settings, SettingsError


def test_defaults_use_the_embedded_database_and_local_port() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.kafka_bootstrap is None
    assert settings.pgdata.name == "pg"
    assert settings.data_dir.name == ".aimm"


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"AIMM_PORT": "eighty"}, "AIMM_PORT"),
        ({"AIMM_PORT": "70000"}, "AIMM_PORT"),
        ({"AIMM_DATABASE_URL": "mysql://x"}, "AIMM_DATABASE_URL"),
        ({"AIMM_LOG_LEVEL": "LOUD"}, "AIMM_LOG_LEVEL"),
        ({"AIMM_KAFKA_BOOTSTRAP": "no-port"}, "AIMM_KAFKA_BOOTSTRAP"),
        ({"AIMM_BOOTSTRAP_ADMIN_KEY": "short"}, "AIMM_BOOTSTRAP_ADMIN_KEY"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_variable(
    env: dict[str, str], mentions: str
) -> None:
    with pytest.raises(SettingsError, match=mentions):
        Settings.from_env(env)


def test_the_command_line_stops_with_a_clear_message_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        env={"AIMM_PORT": "not-a-port", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "AIMM_PORT" in result.stderr
