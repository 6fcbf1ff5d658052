"""``Idempotency-Key`` (IETF httpapi draft, SPEC §6) for calls that are not naturally keyed: register, tag sync.

- The key is scoped to the caller: ``assignment:<id>`` for signed calls, ``register`` for registration.
- The request is identified by SHA-256 of method, path with query and raw body.
- The claim (``api.idempotency_claim``) commits on its own, so a concurrent repeat sees it running (409).
- A new request runs its ``api`` call and ``api.idempotency_complete`` in ONE transaction: the stored answer
  exists exactly when the work was committed.
- A repeat with the same request gets the stored status and body (header ``Idempotency-Replayed: true``);
  another request under the same key gets 422 ``idempotency-key-reused``.
- When the work fails (a problem), the claim is released so that a retry runs it again.
- The key is 1 to 255 visible ASCII characters (the document's ``Idempotency-Key`` parameter); any other is a 400
  ``validation`` problem before any database call.
- Keys expire after 24 hours (``api.idempotency_claim``'s default); a claim left running for 60 s by a
  gateway that died may be taken over.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from .database import POOL_KEY, call_one
from .openapi import IDEMPOTENCY_KEY
from .problems import Problem
from .validation import header_param

log = logging.getLogger("festpay.gateway")

HEADER: str = IDEMPOTENCY_KEY["name"]
REPLAYED_HEADER = "Idempotency-Replayed"
KEY_TTL_S = 86_400

Work = Callable[[psycopg.AsyncConnection], Awaitable[tuple[int, dict[str, Any]]]]


def request_hash(method: str, path_qs: str, body: bytes) -> str:
    """Hex SHA-256 over ``METHOD \\n path-with-query \\n body``, the path as the bytes that were sent."""
    digest = hashlib.sha256()
    digest.update(method.upper().encode() + b"\n" + path_qs.encode("utf-8", "surrogateescape") + b"\n")
    digest.update(body)
    return digest.hexdigest()


async def run_idempotent(request: web.Request, scope: str, body: bytes, work: Work) -> web.Response:
    """Run ``work`` (one api call, returning status and answer) under the request's Idempotency-Key, if any."""
    pool = request.app[POOL_KEY]
    key = header_param(request, IDEMPOTENCY_KEY)
    if key is None:
        async with pool.connection() as conn:       # one api call: it commits on its own (autocommit pool)
            status, answer = await work(conn)
        return web.json_response(answer, status=status)

    digest = request_hash(request.method, request.raw_path, body)
    async with pool.connection() as conn:
        claim = await call_one(
            conn,
            "SELECT outcome, status, response FROM api.idempotency_claim(%s, %s, %s, %s)",
            (scope, key, digest, KEY_TTL_S),
        )
    outcome = claim["outcome"]
    if outcome == "replay":
        return web.json_response(claim["response"], status=claim["status"], headers={REPLAYED_HEADER: "true"})
    if outcome == "mismatch":
        raise Problem("idempotency-key-reused", f"{HEADER} {key!r} was used for another request")
    if outcome == "running":
        raise Problem("idempotency-request-running", f"the first request with {HEADER} {key!r} is still running",
                      headers={"Retry-After": "1"})
    if outcome != "new":
        raise RuntimeError(f"api.idempotency_claim answered {outcome!r}")

    try:
        async with pool.connection() as conn:
            async with conn.transaction():
                status, answer = await work(conn)
                await conn.execute("SELECT api.idempotency_complete(%s, %s, %s, %s)",
                                   (scope, key, status, Jsonb(answer)))
    except BaseException:
        await _release(request, scope, key)
        raise
    return web.json_response(answer, status=status)


async def _release(request: web.Request, scope: str, key: str) -> None:
    try:
        async with request.app[POOL_KEY].connection() as conn:
            await conn.execute("SELECT api.idempotency_release(%s, %s)", (scope, key))
    except Exception as err:  # the claim then goes stale after 60 s and is taken over
        log.warning("could not release Idempotency-Key %r of %s: %s", key, scope, err)
