"""Settings read once from the environment into a typed, validated object."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """An environment variable has a value aimm cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    host: str
    port: int
    kafka_bootstrap: str | None
    log_level: str
    bootstrap_admin_key: str | None

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
        )

    def configure_logging(self) -> None:
        logging.basicConfig(
            level=self.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
