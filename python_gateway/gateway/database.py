"""The gateway's database access: one psycopg async pool, logged in as ``festpay_terminal``.

Handlers only ever run ``SELECT ... FROM api.fn(...)``; :func:`call_one` is the helper for that.
"""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..migrate import libpq_url

POOL_KEY = web.AppKey("db_pool", AsyncConnectionPool)

APPLICATION_NAME = "festpay-gateway"

RECONNECT_S = 1.0
"""How long psycopg_pool keeps at one attempt to replace a lost connection before :func:`_reconnect_again` starts
the next: while the database is away (a failover), a new connection is tried about every second instead of after
psycopg_pool's doubling pauses (1, 2, 4, 8 s ...), so the pool is back within a second of the new leader."""


async def _reconnect_again(pool: AsyncConnectionPool) -> None:
    """psycopg_pool gave up an attempt to connect: ``check`` starts a new one at once when the pool has no
    connection left (and drops idle connections that broke meanwhile)."""
    if not pool.closed:
        await pool.check()


def make_pool(url: str, *, min_size: int = 2, max_size: int = 16, timeout: float = 10.0,
              application_name: str = APPLICATION_NAME) -> AsyncConnectionPool:
    """A closed pool (open it with ``await pool.open()``) named ``application_name``; rows come back as dicts.

    Autocommit: every ``api`` call is one statement and commits on its own, without the BEGIN and COMMIT round trips
    psycopg would otherwise send around it (measured: 258 -> 364 purchases/s through two gateways). Calls that
    must commit together use ``conn.transaction()``.

    A connection that breaks (the server went away) is dropped when it is used or returned, and the request gets a
    503 that terminals retry; new connections are tried about every :data:`RECONNECT_S` until one succeeds.  With a
    multi-host URL and ``target_session_attrs=read-write`` they go to whichever node is the leader now.
    """
    return AsyncConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        name=application_name,
        reconnect_timeout=RECONNECT_S,
        reconnect_failed=_reconnect_again,
        kwargs={"row_factory": dict_row, "application_name": application_name, "autocommit": True},
    )


async def call_one(conn: psycopg.AsyncConnection, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Run one ``SELECT ... FROM api.fn(...)`` and return its single row."""
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    if row is None:  # every api function used here returns exactly one row
        raise RuntimeError(f"no row from {query.split('(')[0]}")
    return row


async def call_all(conn: psycopg.AsyncConnection, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Run one ``SELECT ... FROM api.fn(...)`` and return all its rows."""
    cur = await conn.execute(query, params)
    return await cur.fetchall()
