"""Settings and well-known paths of the Festpay project.

Settings come from the environment; ``PROJECT_ROOT/.env`` (see ``.env.example``)
is loaded first but never overrides a variable that is already set.
"""

from __future__ import annotations

import os
import re
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


def _env_int(name: str, low: int, high: int, what: str) -> int | None:
    """A whole number from low to high in environment variable name (what it is: for the error), or None when unset."""
    value = _env(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not {what}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}={number} is not {what} ({low}-{high})")
    return number


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
    """FESTPAY_GATEWAY_DATABASE_URL: the terminal API's own login (role festpay_terminal) when DATABASE_URL is set.
    Unset: DATABASE_URL's login acting as role festpay_terminal.  The embedded cluster needs none (socket login)."""
    relay_database_url: str | None = None
    """FESTPAY_RELAY_DATABASE_URL: the relay's own login (role festpay_relay) when DATABASE_URL is set.
    Unset: DATABASE_URL's login acting as role festpay_relay.  The embedded cluster needs none (socket login)."""
    tse_url: str | None = None
    """FESTPAY_TSE_URL: the TSE service the relay signs with (``festpay tse serve`` or anything speaking its HTTP
    interface).  Unset: ``festpay run`` starts a local software TSE on FESTPAY_TSE_PORT and the relay uses that."""
    tse_dir: Path | None = None
    """FESTPAY_TSE_DIR: the local software TSE's directory (key, counters, signed logs); default DATA_DIR/tse."""
    tse_port: int = 8081
    """FESTPAY_TSE_PORT: port of the local software TSE that ``festpay run`` starts (127.0.0.1 only)."""
    relay_workers: int = 4
    """FESTPAY_RELAY_WORKERS: tills the relay signs for at the same time (workers, each with its own database
    connection); default 4."""
    web_database_url: str | None = None
    """FESTPAY_WEB_DATABASE_URL: the admin site's own login (role festpay_web) when DATABASE_URL is set.
    Unset: DATABASE_URL's login acting as role festpay_web.  The embedded cluster needs none (socket login)."""
    public_url: str | None = None
    """FESTPAY_PUBLIC_URL: the URL browsers reach the gateway at (``https://pay.example.org``), without a trailing
    slash.  It is the one origin a form may be posted from; https makes the session cookie ``Secure`` with the
    ``__Host-`` prefix.  Unset: the origin is the request's own host, and the cookie is for plain http."""
    provider_url: str | None = None
    """FESTPAY_PROVIDER_URL: the payment provider for online top-ups (anything speaking the API of the simulated
    provider, python_gateway/provider/sim.py).  Unset: ``festpay run`` starts the simulated provider on
    FESTPAY_PROVIDER_PORT."""
    provider_port: int = 8082
    """FESTPAY_PROVIDER_PORT: port of the simulated provider (``festpay provider-sim``; 127.0.0.1 only)."""
    backup_dir: Path | None = None
    """FESTPAY_BACKUP_DIR: the embedded cluster's pgBackRest folder (config, repository, logs); default DATA_DIR/backup.
    The OS user the server runs as must be able to reach it."""
    provider_secret: str | None = None
    """FESTPAY_PROVIDER_SECRET: the shared secret of the provider's webhook signatures.  Unset: one generated once
    in DATA_DIR/provider-secret (mode 0600)."""

    @property
    def tse_directory(self) -> Path:
        """The local software TSE's directory (FESTPAY_TSE_DIR, default DATA_DIR/tse)."""
        return self.tse_dir if self.tse_dir is not None else self.data_dir / "tse"

    @property
    def backup_directory(self) -> Path:
        """The embedded cluster's pgBackRest folder (FESTPAY_BACKUP_DIR, default DATA_DIR/backup)."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backup"

    @property
    def relay_tse_url(self) -> str:
        """The TSE the relay uses: FESTPAY_TSE_URL, or the local one ``festpay run`` starts."""
        return self.tse_url or f"http://127.0.0.1:{self.tse_port}"

    @property
    def provider_base_url(self) -> str:
        """The payment provider in use: FESTPAY_PROVIDER_URL, or the simulated one ``festpay run`` starts."""
        return self.provider_url or f"http://127.0.0.1:{self.provider_port}"


def load_settings() -> Settings:
    """Read the settings from the environment (and .env)."""
    data_dir = _env("FESTPAY_DATA_DIR")
    tse_dir = _env("FESTPAY_TSE_DIR")
    backup_dir = _env("FESTPAY_BACKUP_DIR")
    tse_url = _env("FESTPAY_TSE_URL")
    if tse_url is not None and not tse_url.startswith(("http://", "https://")):
        raise ConfigError(f"FESTPAY_TSE_URL={tse_url!r} is not an http(s) URL")
    public_url = _env("FESTPAY_PUBLIC_URL")
    provider_url = _env("FESTPAY_PROVIDER_URL")
    if provider_url is not None and not provider_url.startswith(("http://", "https://")):
        raise ConfigError(f"FESTPAY_PROVIDER_URL={provider_url!r} is not an http(s) URL")
    if public_url is not None and not re.fullmatch(r"https?://[^/?#\s]+/?", public_url):
        raise ConfigError(f"FESTPAY_PUBLIC_URL={public_url!r} is not an http(s) URL of a host (no path)")
    return Settings(
        database_url=_env("DATABASE_URL"),
        # A relative FESTPAY_DATA_DIR is relative to the project root, like .env itself.
        data_dir=(PROJECT_ROOT / Path(data_dir).expanduser()) if data_dir else PROJECT_ROOT / "data",
        pg_bin=_env("PG_BIN"),
        pg_port=_env_int("FESTPAY_PG_PORT", 1, 65535, "a port number"),
        http_port=_env_int("FESTPAY_HTTP_PORT", 1, 65535, "a port number") or 8080,
        gateway_database_url=_env("FESTPAY_GATEWAY_DATABASE_URL"),
        relay_database_url=_env("FESTPAY_RELAY_DATABASE_URL"),
        tse_url=tse_url.rstrip("/") if tse_url else None,
        tse_dir=(PROJECT_ROOT / Path(tse_dir).expanduser()) if tse_dir else None,
        tse_port=_env_int("FESTPAY_TSE_PORT", 1, 65535, "a port number") or 8081,
        relay_workers=_env_int("FESTPAY_RELAY_WORKERS", 1, 64, "a number of relay workers") or 4,
        web_database_url=_env("FESTPAY_WEB_DATABASE_URL"),
        public_url=public_url.rstrip("/") if public_url else None,
        provider_url=provider_url.rstrip("/") if provider_url else None,
        provider_port=_env_int("FESTPAY_PROVIDER_PORT", 1, 65535, "a port number") or 8082,
        provider_secret=_env("FESTPAY_PROVIDER_SECRET"),
        backup_dir=(PROJECT_ROOT / Path(backup_dir).expanduser()) if backup_dir else None,
    )
