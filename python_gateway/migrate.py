"""Bring a database to the current shape: yoyo migrations, then all procedures.

1. Pending yoyo migrations from ``migrations/`` (under yoyo's own lock).
2. Every ``procedures/*.sql`` file, in name order, in ONE transaction.  The
   files are ``CREATE OR REPLACE`` and plain SQL (no psql backslash commands),
   so re-applying them is harmless.

The whole run is also serialised by a PostgreSQL advisory lock, so two
``migrate`` calls against the same database never interleave.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .config import MIGRATIONS_DIR, PROCEDURES_DIR

log = logging.getLogger("festpay.migrate")

# pg_advisory_lock key of "festpay migrate" (an arbitrary constant that fits a signed bigint).
ADVISORY_LOCK_KEY = 0x5F3C_1A70_2E9B_44D1
YOYO_LOCK_TIMEOUT = 60


class MigrationError(RuntimeError):
    """A migration, a procedure file or a SQL script failed; the message says which."""


def libpq_url(url: str) -> str:
    """``url`` as libpq/psycopg understand it (drops a SQLAlchemy-style ``+driver``)."""
    scheme, sep, rest = url.partition("://")
    if sep and "+" in scheme and scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return f"postgresql://{rest}"
    return url


def yoyo_url(url: str) -> str:
    """A ``postgresql+psycopg://`` URL for yoyo that connects where ``url`` does.

    yoyo splits its URL with urllib (which lower-cases host names and knows no
    percent-encoded socket paths in the host part) and passes the query
    arguments unchanged to ``psycopg.connect()``.  So we parse ``url`` with
    libpq's own parser and put every parameter except the database name into
    the query string: ``host`` (also a socket folder), ``port``, ``user``,
    ``password``, ``sslmode``, ...
    """
    params = {k: str(v) for k, v in conninfo_to_dict(libpq_url(url)).items() if v is not None}
    dbname = params.pop("dbname", "")
    query = urlencode(params)
    return f"postgresql+psycopg:///{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def _statement_line(text: str, err: psycopg.Error) -> str:
    position = getattr(err.diag, "statement_position", None)
    if not position:
        return ""
    try:
        return f" (line {text.count(chr(10), 0, int(position) - 1) + 1})"
    except ValueError:
        return ""


def _apply_migrations(conninfo: str, migrations_dir: Path) -> int:
    from yoyo import get_backend, read_migrations
    from yoyo.exceptions import LockTimeout
    from yoyo.migrations import MigrationList

    backend = get_backend(yoyo_url(conninfo))  # creates yoyo's bookkeeping tables
    try:
        if migrations_dir.is_dir() and any(migrations_dir.iterdir()):
            migrations = read_migrations(str(migrations_dir))
        else:
            migrations = MigrationList()
        try:
            with backend.lock(timeout=YOYO_LOCK_TIMEOUT):
                pending = backend.to_apply(migrations)
                for migration in pending:
                    log.info("applying migration %s", migration.id)
                backend.apply_migrations(pending)
        except LockTimeout as err:
            raise MigrationError(
                f"yoyo's migration lock stayed taken for {YOYO_LOCK_TIMEOUT}s ({err}); if no other "
                "migration runs, a crashed one left it: `yoyo break-lock` clears it"
            ) from None
        return len(pending)
    finally:
        backend.connection.close()


def _grant_migration_history(conninfo: str) -> None:
    """Let festpay_owner read yoyo's bookkeeping: api.schema_version() (SECURITY DEFINER, run by the gateway's
    /health/ready) reads the newest applied migration from it.  yoyo creates the table as the migrating role."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ready = conn.execute(
            "SELECT to_regclass('public._yoyo_migration') IS NOT NULL"
            " AND EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_owner')"
        ).fetchone()[0]
        if ready:
            conn.execute("GRANT SELECT ON public._yoyo_migration TO festpay_owner")


def _apply_procedures(conninfo: str, procedures_dir: Path) -> int:
    files = sorted(procedures_dir.glob("*.sql")) if procedures_dir.is_dir() else []
    if not files:
        return 0
    with psycopg.connect(conninfo) as conn:
        with conn.transaction():
            for path in files:
                text = path.read_text()
                try:
                    conn.execute(text)  # no parameters: sent as one multi-statement query
                except psycopg.Error as err:
                    raise MigrationError(
                        f"{path.name}{_statement_line(text, err)}: {str(err).strip()}"
                    ) from None
    log.info("applied %d procedure file(s) from %s", len(files), procedures_dir)
    return len(files)


def migrate(
    url: str,
    *,
    migrations_dir: str | os.PathLike = MIGRATIONS_DIR,
    procedures_dir: str | os.PathLike = PROCEDURES_DIR,
) -> None:
    """Apply pending migrations, then (re)apply all procedures.  Idempotent."""
    conninfo = libpq_url(url)
    try:
        with psycopg.connect(conninfo, autocommit=True) as lock_conn:
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            try:
                applied = _apply_migrations(conninfo, Path(migrations_dir))
                log.info("%d migration(s) applied", applied)
                _apply_procedures(conninfo, Path(procedures_dir))
                _grant_migration_history(conninfo)
            finally:
                if not lock_conn.closed:
                    lock_conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    except MigrationError:
        raise
    except psycopg.Error as err:
        raise MigrationError(f"migrate failed: {str(err).strip()}") from None
    except Exception as err:  # yoyo wraps driver errors in its own classes
        if type(err).__module__.startswith("yoyo"):
            raise MigrationError(f"migration failed: {err}") from None
        raise


def load_sql_file(url: str, path: str | os.PathLike, *, psql: str | None = None) -> None:
    """Run a ``sql/`` script as a DBA would, in one transaction.

    With ``psql`` (given, or found on PATH) the script runs as
    ``psql -X -v ON_ERROR_STOP=1 --single-transaction -f path``, so psql
    meta-commands such as ``\\echo`` work.  Without psql it is sent with psycopg
    and must then be plain SQL.
    """
    path = Path(path)
    conninfo = libpq_url(url)
    psql = psql or shutil.which("psql")
    if psql:
        result = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
             "-d", conninfo, "-f", str(path)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise MigrationError(f"{path.name} failed:\n{(result.stderr or result.stdout).strip()}")
        return
    text = path.read_text()
    try:
        with psycopg.connect(conninfo) as conn, conn.transaction():
            conn.execute(text)
    except psycopg.Error as err:
        raise MigrationError(f"{path.name}{_statement_line(text, err)}: {str(err).strip()}") from None
