"""Health checks for load balancers: ``GET /health`` (alive) and ``GET /health/ready``.

Ready means: the database answers, and ``api.schema_version()`` (the newest applied migration) equals the
newest migration this gateway ships in ``migrations/``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

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


async def _schema_version(request: web.Request) -> str | None:
    async with request.app[POOL_KEY].connection(timeout=READY_TIMEOUT_S) as conn:
        cur = await conn.execute("SELECT api.schema_version() AS version")
        row = await cur.fetchone()
    return row["version"] if row else None


async def ready(request: web.Request) -> web.Response:
    """GET /health/ready: 200 when the database answers and its migrations are current, else 503 not-ready."""
    expected = request.app[EXPECTED_VERSION_KEY]
    try:
        version = await asyncio.wait_for(_schema_version(request), READY_TIMEOUT_S)
    except Exception as err:  # unreachable, timed out, pool exhausted, ...
        log.warning("readiness: the database does not answer: %s", str(err).strip() or type(err).__name__)
        raise Problem("not-ready", "the database does not answer", {"database": "unreachable"}) from None
    if version != expected:
        raise Problem("not-ready", f"the database is at migration {version}, this gateway expects {expected}",
                      {"database": "ok", "schema_version": version, "expected_schema_version": expected})
    return web.json_response({"status": "ready", "database": "ok", "schema_version": version})
