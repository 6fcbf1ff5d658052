"""Health checks for load balancers: ``GET /health`` (alive) and ``GET /health/ready``.

Ready means: the database answers, and ``api.schema_version()`` (the newest applied migration) equals the
newest migration this gateway ships in ``migrations/``.  The answer also reports the signing lag
(``api.outbox_lag('tse')``: receipts waiting for the TSE and the age of the oldest) as ``signing``; a lag never
makes the gateway unready: bookings go on during a TSE outage (receipts say so) and are signed afterwards, so
taking the gateways out of the load balancer would only stop the festival.  Alert on ``signing.oldest_ms``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
from aiohttp import web

from .database import POOL_KEY
from .problems import Problem

log = logging.getLogger("festpay.gateway")

READY_TIMEOUT_S = 3.0
EXPECTED_VERSION_KEY = web.AppKey("expected_schema_version", str)


def newest_migration(migrations_dir: Path) -> str | None:
    """The id (file name without extension) of the newest yoyo migration, or None when there is none."""
    ids = []
    for path in migrations_dir.glob("*"):
        name = path.name
        if name.endswith(".rollback.sql") or name.startswith((".", "_")):
            continue
        if name.endswith(".sql"):
            ids.append(name[: -len(".sql")])
        elif name.endswith(".py"):
            ids.append(name[: -len(".py")])
    return max(ids) if ids else None


async def health(request: web.Request) -> web.Response:
    """GET /health: the process answers."""
    return web.json_response({"status": "ok"})


async def _schema_version(request: web.Request) -> tuple[str | None, dict | None]:
    """The schema version, and the signing lag (None when the database has no outbox yet, e.g. mid-upgrade)."""
    async with request.app[POOL_KEY].connection(timeout=READY_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT api.schema_version() AS version")
        row = await cur.fetchone()
        version = row["version"] if row else None
        try:
            cur = await conn.execute("SELECT pending, oldest_ms FROM api.outbox_lag('tse')")
            lag = await cur.fetchone()
        except psycopg.errors.UndefinedFunction:
            lag = None
    signing = None if lag is None else {"pending": int(lag["pending"]), "oldest_ms": lag["oldest_ms"]}
    return version, signing


async def ready(request: web.Request) -> web.Response:
    """GET /health/ready: 200 when the database answers and its migrations are current, else 503 not-ready."""
    expected = request.app[EXPECTED_VERSION_KEY]
    try:
        version, signing = await asyncio.wait_for(_schema_version(request), READY_TIMEOUT_S)
    except Exception as err:  # unreachable, timed out, pool exhausted, ...
        log.warning("readiness: the database does not answer: %s", str(err).strip() or type(err).__name__)
        raise Problem("not-ready", "the database does not answer", {"database": "unreachable"}) from None
    if version != expected:
        raise Problem("not-ready", f"the database is at migration {version}, this gateway expects {expected}",
                      {"database": "ok", "schema_version": version, "expected_schema_version": expected,
                       "signing": signing})
    return web.json_response({"status": "ready", "database": "ok", "schema_version": version, "signing": signing})
