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
    assert settings.llm.base_url is None  # the embedded LLM only
    assert (settings.llm.timeout, settings.llm.embedded_context_size) == (120.0, 4096)


def test_the_llm_settings_are_read_for_the_providers() -> None:
    llm = Settings.from_env(
        {
            "AIMM_LLM_BASE_URL": "http://127.0.0.1:8080/v1",
            "AIMM_LLM_API_KEY": "k",
            "AIMM_LLM_CONTEXT_LENGTH": "8192",
            "AIMM_LLM_TIMEOUT": "30.5",
            "AIMM_LLM_EMBEDDED_THREADS": "2",
        }
    ).llm
    assert (llm.base_url, llm.api_key, llm.context_length, llm.timeout) == (
        "http://127.0.0.1:8080/v1",
        "k",
        8192,
        30.5,
    )
    assert llm.embedded_threads == 2


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"AIMM_PORT": "eighty"}, "AIMM_PORT"),
        ({"AIMM_PORT": "70000"}, "AIMM_PORT"),
        ({"AIMM_DATABASE_URL": "mysql://x"}, "AIMM_DATABASE_URL"),
        ({"AIMM_LOG_LEVEL": "LOUD"}, "AIMM_LOG_LEVEL"),
        ({"AIMM_KAFKA_BOOTSTRAP": "no-port"}, "AIMM_KAFKA_BOOTSTRAP"),
        ({"AIMM_BOOTSTRAP_ADMIN_KEY": "short"}, "AIMM_BOOTSTRAP_ADMIN_KEY"),
        ({"AIMM_LLM_BASE_URL": "ftp://llm"}, "AIMM_LLM_BASE_URL"),
        ({"AIMM_LLM_TIMEOUT": "soon"}, "AIMM_LLM_TIMEOUT"),
        ({"AIMM_LLM_TIMEOUT": "0"}, "AIMM_LLM_TIMEOUT"),
        ({"AIMM_LLM_CONTEXT_LENGTH": "-5"}, "AIMM_LLM_CONTEXT_LENGTH"),
        ({"AIMM_LLM_EMBEDDED_CONTEXT": "32"}, "AIMM_LLM_EMBEDDED_CONTEXT"),
        ({"AIMM_LLM_EMBEDDED_THREADS": "many"}, "AIMM_LLM_EMBEDDED_THREADS"),
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
