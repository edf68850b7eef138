"""Settings read once from the environment into a typed, validated object."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """An environment variable has a value aimm cannot use."""


@dataclass(frozen=True)
class LLMSettings:
    """The LLM providers' settings (``docs/llm.md``), the keywords of ``build_providers``."""

    base_url: str | None = None
    api_key: str | None = None
    context_length: int | None = None
    timeout: float = 120.0
    embedded_context_size: int = 4096
    embedded_threads: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LLMSettings:
        base_url = env.get("AIMM_LLM_BASE_URL") or None
        if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
            raise SettingsError(f"AIMM_LLM_BASE_URL must be an http(s) URL, got {base_url!r}")
        timeout = _seconds(env, "AIMM_LLM_TIMEOUT", 120.0)
        context_size = _positive(env, "AIMM_LLM_EMBEDDED_CONTEXT", 4096) or 4096
        if context_size < 64:
            raise SettingsError("AIMM_LLM_EMBEDDED_CONTEXT must be at least 64 tokens")
        return cls(
            base_url=base_url,
            api_key=env.get("AIMM_LLM_API_KEY") or None,
            context_length=_positive(env, "AIMM_LLM_CONTEXT_LENGTH", None),
            timeout=timeout,
            embedded_context_size=context_size,
            embedded_threads=_positive(env, "AIMM_LLM_EMBEDDED_THREADS", None),
        )


# `make console` builds the console here (npm in console/)
DEFAULT_CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console" / "dist"

RATE_UNITS = ("second", "minute", "hour", "day")


@dataclass(frozen=True)
class LimitSettings:
    """How the API refuses overload (``docs/reliability.md``, "Overload").

    ``rate_limit``: at most N requests per unit and API key, per API process, as
    ``(unit, N)``; None is off. ``max_body_bytes``: the largest request body (413
    beyond). ``request_timeout``: seconds a client has to send a whole request, headers
    and body, once its connection is open or its previous response is sent (408 and
    the connection closed beyond).
    """

    rate_limit: tuple[str, int] | None = ("second", 1000)
    max_body_bytes: int = 32 * 1024 * 1024
    request_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LimitSettings:
        text = (env.get("AIMM_RATE_LIMIT") or "1000/second").strip().lower()
        rate: tuple[str, int] | None = None
        if text != "off":
            count, _, unit = text.partition("/")
            if not count.isdigit() or int(count) < 1 or unit not in RATE_UNITS:
                raise SettingsError(
                    f"AIMM_RATE_LIMIT must be N/second, N/minute, N/hour, N/day or off, "
                    f"got {text!r}"
                )
            rate = (unit, int(count))
        return cls(
            rate_limit=rate,
            max_body_bytes=_positive(env, "AIMM_MAX_BODY_BYTES", cls.max_body_bytes)
            or cls.max_body_bytes,
            request_timeout=_seconds(env, "AIMM_REQUEST_TIMEOUT", cls.request_timeout),
        )


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the API waits for PostgreSQL before it answers ``503`` with
    ``Retry-After`` (``docs/reliability.md``, "Database outage"). Whole seconds: libpq
    and eventsourcing's settings take integers (libpq's connect timeout at least 2).

    ``connect_timeout`` (``AIMM_DB_CONNECT_TIMEOUT``) bounds opening one connection;
    ``pool_timeout`` (``AIMM_DB_POOL_TIMEOUT``) bounds waiting for a pooled one, on the
    command side and the read side; ``command_timeout`` (``AIMM_DB_COMMAND_TIMEOUT``)
    bounds one statement of an API read (a server that hangs rather than goes away).
    """

    connect_timeout: int = 3
    pool_timeout: int = 5
    command_timeout: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DatabaseTimeouts:
        connect = _positive(env, "AIMM_DB_CONNECT_TIMEOUT", cls.connect_timeout)
        if connect is not None and connect < 2:
            raise SettingsError("AIMM_DB_CONNECT_TIMEOUT must be at least 2 seconds")
        return cls(
            connect_timeout=connect or cls.connect_timeout,
            pool_timeout=_positive(env, "AIMM_DB_POOL_TIMEOUT", cls.pool_timeout)
            or cls.pool_timeout,
            command_timeout=_positive(env, "AIMM_DB_COMMAND_TIMEOUT", cls.command_timeout)
            or cls.command_timeout,
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {text!r}")
    return seconds


def _positive(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    text = env.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    host: str
    port: int
    kafka_bootstrap: str | None
    log_level: str
    bootstrap_admin_key: str | None
    llm: LLMSettings = field(default_factory=LLMSettings)
    database: DatabaseTimeouts = field(default_factory=DatabaseTimeouts)
    limits: LimitSettings = field(default_factory=LimitSettings)
    # the web console's built files, served at / (api/console.py)
    console_dir: Path = field(default_factory=lambda: DEFAULT_CONSOLE_DIR)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("AIMM_DATABASE_URL") or None
        if database_url is not None:
            parts = urlsplit(database_url)
            if parts.scheme not in ("postgresql", "postgres"):
                raise SettingsError(
                    f"AIMM_DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}"
                )
        port_text = env.get("AIMM_PORT", "8000")
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError(f"AIMM_PORT must be an integer, got {port_text!r}") from None
        if not 0 < port < 65536:
            raise SettingsError(f"AIMM_PORT must be between 1 and 65535, got {port}")
        log_level = env.get("AIMM_LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"AIMM_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        kafka = env.get("AIMM_KAFKA_BOOTSTRAP") or None
        if kafka is not None:
            for server in kafka.split(","):
                host, _, kport = server.strip().rpartition(":")
                if not host or not kport.isdigit():
                    raise SettingsError(
                        f"AIMM_KAFKA_BOOTSTRAP must be host:port[,host:port], got {kafka!r}"
                    )
        admin_key = env.get("AIMM_BOOTSTRAP_ADMIN_KEY") or None
        if admin_key is not None and len(admin_key) < 16:
            raise SettingsError("AIMM_BOOTSTRAP_ADMIN_KEY must be at least 16 characters")
        return cls(
            database_url=database_url,
            data_dir=Path(env.get("AIMM_DATA_DIR", "./.aimm")).expanduser().resolve(),
            host=env.get("AIMM_HOST", "127.0.0.1"),
            port=port,
            kafka_bootstrap=kafka,
            log_level=log_level,
            bootstrap_admin_key=admin_key,
            llm=LLMSettings.from_env(env),
            database=DatabaseTimeouts.from_env(env),
            limits=LimitSettings.from_env(env),
            console_dir=Path(env.get("AIMM_CONSOLE_DIR") or DEFAULT_CONSOLE_DIR).resolve(),
        )

    def configure_logging(self) -> None:
        logging.basicConfig(
            level=self.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
