"""The web sites' database access: one psycopg async pool logged in as ``festpay_web``, and :func:`call`.

:func:`call` is the only way a page reaches the database: exactly one ``SELECT * FROM api.<fn>(%s, ...)`` with
the arguments bound as parameters.  Every admin function checks the session token it gets first, in SQL.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ..gateway.database import make_pool as gateway_pool

WEB_POOL_KEY = web.AppKey("web_db_pool", AsyncConnectionPool)

APPLICATION_NAME = "festpay-web"

_FUNCTION = re.compile(r"[a-z][a-z0-9_]{0,62}")


def make_pool(url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0) -> AsyncConnectionPool:
    """A closed pool (open it with ``await pool.open()``) logged in with ``url``, autocommit, rows as dicts."""
    return gateway_pool(url, min_size=min_size, max_size=max_size, timeout=timeout, application_name=APPLICATION_NAME)


def _query(function: str, arity: int) -> sql.Composed:
    if not _FUNCTION.fullmatch(function):
        raise ValueError(f"not an api function name: {function!r}")
    placeholders = sql.SQL(", ").join([sql.Placeholder()] * arity)
    return sql.SQL("SELECT * FROM api.{}({})").format(sql.Identifier(function), placeholders)


async def call_pool(pool: AsyncConnectionPool, function: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of ``SELECT * FROM api.<function>(args...)``, run on a connection of ``pool``."""
    async with pool.connection() as conn:
        cur = await conn.execute(_query(function, len(args)), args)
        return await cur.fetchall()


async def call(request: web.Request, function: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of ``SELECT * FROM api.<function>(args...)`` on the web pool of the request's application."""
    return await call_pool(request.config_dict[WEB_POOL_KEY], function, *args)


async def call_row(request: web.Request, function: str, *args: Any) -> dict[str, Any] | None:
    """The single row of an api function that returns one (or None when it returned none)."""
    rows = await call(request, function, *args)
    return rows[0] if rows else None


async def call_value(request: web.Request, function: str, *args: Any) -> Any:
    """The value of an api function that returns a scalar (jsonb, bigint, text, boolean, void -> None)."""
    row = await call_row(request, function, *args)
    return None if row is None else next(iter(row.values()), None)
