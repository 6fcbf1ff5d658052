"""HMAC authentication of terminal requests (SPEC §7), as middleware that looks at ``/terminal/`` paths only.

Every ``/terminal/v1/*`` request except ``register`` and ``openapi.json`` must carry
``X-Festpay-Assignment``, ``X-Festpay-Timestamp`` (within 300 s of our clock) and
``X-Festpay-Signature`` (see :mod:`python_gateway.signing`).  Anything missing, stale, unknown or
wrong is a 401 problem ``unauthorized``; the signature is compared in constant time.  The three headers are
visible ASCII (a decimal id, decimal seconds, base64): any other byte, NUL, a control character or one that is not
UTF-8 (aiohttp hands those on as lone surrogates), is a 401 before any database call.  Assignment
secrets come from ``api.terminal_secret`` and are cached (an assignment's secret never changes); when the ledger
answers a call with ``terminal-revoked`` (an admin revoked the assignment) the secret leaves the cache, so the
next request asks the ledger again.  Every other path (the admin site, health, problem types) passes untouched.
"""

from __future__ import annotations

import base64
import re
import time
from collections import OrderedDict
from datetime import datetime, timezone

import psycopg
from aiohttp import web

from .. import signing
from .database import POOL_KEY
from .problems import Handler, Problem

TERMINAL_PREFIX = "/terminal/v1/"
#: The ledger's answer to any call of an assignment an admin revoked (problem ``terminal-revoked``, 401).
REVOKED_SQLSTATE = "FP072"
REVOKED_SLUG = "terminal-revoked"
UNSIGNED_PATHS = frozenset({"/terminal/v1/register", "/terminal/v1/openapi.json"})

#: request[ASSIGNMENT] holds the authenticated assignment id.
ASSIGNMENT = web.RequestKey("assignment_id", int)

MAX_BODY = 64 * 1024
_INT = re.compile("-?[0-9]{1,19}")
AUTH_HEADERS = (signing.HEADER_ASSIGNMENT, signing.HEADER_TIMESTAMP, signing.HEADER_SIGNATURE)
MAX_HEADER = 512
_TOKEN = re.compile(f"[\\x21-\\x7e]{{1,{MAX_HEADER}}}")  # what the three headers are made of
_BIGINT_MAX = 2**63 - 1


class SecretCache:
    """Assignment id -> base64 secret, bounded, least recently used first out."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._secrets: OrderedDict[int, str] = OrderedDict()

    async def get(self, request: web.Request, assignment_id: int) -> str | None:
        secret = self._secrets.get(assignment_id)
        if secret is not None:
            self._secrets.move_to_end(assignment_id)
            return secret
        async with request.app[POOL_KEY].connection() as conn:
            cur = await conn.execute("SELECT api.terminal_secret(%s::bigint) AS secret", (assignment_id,))
            row = await cur.fetchone()
        raw = row["secret"] if row else None
        if raw is None:
            return None  # unknown: not cached, a registration may follow
        secret = base64.b64encode(bytes(raw)).decode("ascii")
        self._secrets[assignment_id] = secret
        if len(self._secrets) > self.size:
            self._secrets.popitem(last=False)
        return secret

    def evict(self, assignment_id: int) -> None:
        """Forget the assignment's secret (it was revoked)."""
        self._secrets.pop(assignment_id, None)

    def __contains__(self, assignment_id: object) -> bool:
        return assignment_id in self._secrets


SECRETS_KEY = web.AppKey("secret_cache", SecretCache)


def needs_signature(path: str) -> bool:
    """Whether ``path`` is a terminal call that must be signed (nothing outside ``/terminal/v1/`` is)."""
    return path.startswith(TERMINAL_PREFIX) and path not in UNSIGNED_PATHS


def _unauthorized(detail: str, **extensions: object) -> Problem:
    return Problem("unauthorized", detail, dict(extensions),
                   headers={"WWW-Authenticate": 'FestpayHMAC realm="terminal"'})


async def read_body(request: web.Request) -> bytes:
    """The raw body, at most 64 KiB (413 problem ``payload-too-large`` beyond)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Problem("payload-too-large", f"the body must be at most {MAX_BODY} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem("payload-too-large", f"the body must be at most {MAX_BODY} bytes") from None
    if len(body) > MAX_BODY:  # a chunked body, when the app admits larger ones for the admin site's uploads
        raise Problem("payload-too-large", f"the body must be at most {MAX_BODY} bytes")
    return body


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not needs_signature(request.path):
        return await handler(request)
    given = {name: request.headers.get(name) for name in AUTH_HEADERS}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise _unauthorized("missing header(s): " + ", ".join(missing))
    malformed = [name for name, value in given.items() if not _TOKEN.fullmatch(value or "")]
    if malformed:
        raise _unauthorized(f"not 1 to {MAX_HEADER} visible ASCII characters: " + ", ".join(malformed))
    assignment_h, timestamp_h, signature_h = (given[name] or "" for name in AUTH_HEADERS)
    if not _INT.fullmatch(assignment_h) or not 0 < int(assignment_h) <= _BIGINT_MAX:
        raise _unauthorized(f"{signing.HEADER_ASSIGNMENT} must be an assignment id")
    if not _INT.fullmatch(timestamp_h):
        raise _unauthorized(f"{signing.HEADER_TIMESTAMP} must be Unix seconds")
    now = time.time()
    if not signing.timestamp_fresh(int(timestamp_h), now):
        raise _unauthorized(
            f"{signing.HEADER_TIMESTAMP} is more than {signing.MAX_SKEW_S} s away from the server's clock",
            server_time=datetime.fromtimestamp(int(now), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    body = await read_body(request)
    assignment_id = int(assignment_h)
    secret = await request.app[SECRETS_KEY].get(request, assignment_id)
    # An unknown assignment is checked against a dummy key, so both failures take the same path and answer.
    ok = signing.verify(secret or _DUMMY_SECRET, request.method, request.raw_path, timestamp_h, body, signature_h)
    if not ok or secret is None:
        raise _unauthorized("the signature does not match")
    request[ASSIGNMENT] = assignment_id
    try:
        return await handler(request)
    except psycopg.Error as err:
        if err.sqlstate == REVOKED_SQLSTATE:
            request.app[SECRETS_KEY].evict(assignment_id)
        raise
    except Problem as problem:
        if problem.slug == REVOKED_SLUG:
            request.app[SECRETS_KEY].evict(assignment_id)
        raise


_DUMMY_SECRET = base64.b64encode(b"\0" * 32).decode("ascii")
