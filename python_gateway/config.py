"""Settings and well-known paths of the Festpay project.

Settings come from the environment; ``PROJECT_ROOT/.env`` (see ``.env.example``)
is loaded first but never overrides a variable that is already set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
PROCEDURES_DIR = PROJECT_ROOT / "procedures"
SCHEMA_DIR = PROJECT_ROOT / "schema"
SQL_DIR = PROJECT_ROOT / "sql"
TESTS_DIR = PROJECT_ROOT / "tests"

ENV_FILE = PROJECT_ROOT / ".env"

load_dotenv(ENV_FILE, override=False)


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _env(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _env_port(name: str) -> int | None:
    value = _env(name)
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={port} is not a port number (1-65535)")
    return port


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    """DATABASE_URL: use this database instead of the embedded cluster."""
    data_dir: Path
    """FESTPAY_DATA_DIR: where the embedded cluster lives (default PROJECT_ROOT/data)."""
    pg_bin: str | None
    """PG_BIN: folder with the PostgreSQL server binaries (initdb, pg_ctl, postgres)."""
    pg_port: int | None
    """FESTPAY_PG_PORT: port of the embedded cluster (default: a free port, chosen once)."""
    http_port: int
    """FESTPAY_HTTP_PORT: port of the HTTP gateway (default 8080)."""
    gateway_database_url: str | None = None
    """FESTPAY_GATEWAY_DATABASE_URL: the gateway's own login (role festpay_gateway) when DATABASE_URL is set;
    falls back to DATABASE_URL.  The embedded cluster needs none (socket login as festpay_gateway)."""


def load_settings() -> Settings:
    """Read the settings from the environment (and .env)."""
    data_dir = _env("FESTPAY_DATA_DIR")
    return Settings(
        database_url=_env("DATABASE_URL"),
        # A relative FESTPAY_DATA_DIR is relative to the project root, like .env itself.
        data_dir=(PROJECT_ROOT / Path(data_dir).expanduser()) if data_dir else PROJECT_ROOT / "data",
        pg_bin=_env("PG_BIN"),
        pg_port=_env_port("FESTPAY_PG_PORT"),
        http_port=_env_port("FESTPAY_HTTP_PORT") or 8080,
        gateway_database_url=_env("FESTPAY_GATEWAY_DATABASE_URL"),
    )
