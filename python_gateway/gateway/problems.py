"""RFC 9457 problem responses: every failure of the gateway is ``application/problem+json``.

The problem types are the database's named errors (``api.problem_types()``, SQLSTATE class ``FP``, loaded at
start-up) plus a few that only the gateway raises (:data:`GATEWAY_PROBLEMS`).  A database error is mapped by its
SQLSTATE: a named one to its type (the JSON in the error's DETAIL becomes extension members, e.g. ``available``),
class 22/23 (bad data, constraint) to ``validation``, anything else to ``internal`` (logged, no trace sent).

A problem body is always valid UTF-8 JSON: text quoted back from a hostile request (a path, a header value that was
not UTF-8 and so holds lone surrogates) has its lone surrogates written out as ``\\udcff`` text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from aiohttp import web

log = logging.getLogger("festpay.gateway")

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    """One stable problem type: ``/problems/<slug>``."""

    slug: str
    status: int
    title: str
    sqlstate: str | None = None
    """The SQLSTATE the database raises it with (None: raised by the gateway only)."""

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug

    def describe(self) -> dict[str, Any]:
        """The small JSON document served at ``GET /problems/<slug>``."""
        return {
            "type": self.uri,
            "slug": self.slug,
            "title": self.title,
            "status": self.status,
            "sqlstate": self.sqlstate,
            "source": "database" if self.sqlstate else "gateway",
        }


# Raised by the gateway itself; the database's own come from api.problem_types().
GATEWAY_PROBLEMS: tuple[ProblemType, ...] = (
    ProblemType("unauthorized", 401, "The request is not signed by a registered terminal"),
    ProblemType("webhook-refused", 401, "The payment provider's webhook signature or body is not acceptable"),
    ProblemType("method-not-allowed", 405, "This path does not take that method"),
    ProblemType("idempotency-request-running", 409, "A request with this Idempotency-Key is still running"),
    ProblemType("payload-too-large", 413, "The request body is larger than 64 KiB"),
    ProblemType("unsupported-media-type", 415, "The request body must be application/json"),
    ProblemType("idempotency-key-reused", 422, "The Idempotency-Key was used for another request"),
    ProblemType("internal", 500, "Internal error"),
    ProblemType("not-ready", 503, "The gateway is not ready (database unreachable or migrations not current)"),
)

# Used until (and in case) the database's list is loaded; the database's rows win.
FALLBACK_PROBLEMS: tuple[ProblemType, ...] = (
    ProblemType("validation", 400, "The request is not valid", "FP001"),
    ProblemType("not-found", 404, "No such object", "FP010"),
)


@dataclass
class Problem(Exception):
    """Raise in a handler to answer with a problem of type ``slug``."""

    slug: str
    detail: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.slug}: {self.detail}"


class ProblemRegistry:
    """Problem types by slug and by SQLSTATE."""

    def __init__(self, types: list[ProblemType] | None = None):
        self.by_slug: dict[str, ProblemType] = {}
        self.by_sqlstate: dict[str, ProblemType] = {}
        for pt in (*FALLBACK_PROBLEMS, *GATEWAY_PROBLEMS, *(types or [])):
            self.add(pt)

    def add(self, pt: ProblemType) -> None:
        self.by_slug[pt.slug] = pt
        if pt.sqlstate:
            self.by_sqlstate[pt.sqlstate] = pt

    async def load(self, conn: psycopg.AsyncConnection) -> None:
        """Add the database's problem types (``api.problem_types()``)."""
        cur = await conn.execute("SELECT slug, sqlstate, http_status, title FROM api.problem_types()")
        for row in await cur.fetchall():
            if isinstance(row, Mapping):
                slug, sqlstate, status, title = row["slug"], row["sqlstate"], row["http_status"], row["title"]
            else:
                slug, sqlstate, status, title = row
            self.add(ProblemType(slug, int(status), title, sqlstate))

    def all(self) -> list[ProblemType]:
        return sorted(self.by_slug.values(), key=lambda pt: (pt.status, pt.slug))

    # ------------------------------------------------------------------ answers

    def response(self, problem: Problem) -> web.Response:
        pt = self.by_slug.get(problem.slug) or self.by_slug["internal"]
        body: dict[str, Any] = {}
        for key, value in problem.extensions.items():
            if key not in ("type", "title", "status", "detail"):
                body[key] = value
        body.update(type=pt.uri, title=pt.title, status=pt.status)
        if problem.detail:
            body["detail"] = problem.detail
        return web.Response(
            status=pt.status,
            body=json.dumps(unicode_safe(body), separators=(",", ":")).encode(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=problem.headers,
        )

    def from_db_error(self, err: psycopg.Error) -> Problem | None:
        """The problem a database error stands for, or None when it is not a named/data error (-> internal)."""
        sqlstate = err.sqlstate or ""
        diag = err.diag
        primary = (diag.message_primary or "").strip()
        pt = self.by_sqlstate.get(sqlstate)
        if pt is not None:
            prefix = pt.slug + ": "
            detail = primary[len(prefix):] if primary.startswith(prefix) else primary
            extensions: dict[str, Any] = {}
            if diag.message_detail:
                try:
                    parsed = json.loads(diag.message_detail)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    extensions = parsed
            return Problem(pt.slug, detail or None, extensions)
        if sqlstate[:2] in ("22", "23") or (not sqlstate and isinstance(err, psycopg.DataError)):
            # (psycopg raises DataError itself, without a SQLSTATE, e.g. for a NUL character in a text value.)
            # Bad data that got past the edge (a number out of range, an impossible date, a constraint).
            return Problem("validation", primary or None)
        return None


def unicode_safe(value: Any) -> Any:
    """``value`` (JSON-like) with every lone surrogate in its strings written out as backslash text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {unicode_safe(k): unicode_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unicode_safe(v) for v in value]
    return value


REGISTRY_KEY = web.AppKey("problem_registry", ProblemRegistry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every failure into a problem response; unexpected ones are logged and answered as ``internal``."""
    registry = request.app[REGISTRY_KEY]
    try:
        return await handler(request)
    except Problem as problem:
        return registry.response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return registry.response(Problem("not-found", f"no resource at {request.path}"))
        if exc.status == 405:
            allow = exc.headers.get("Allow", "")
            return registry.response(
                Problem("method-not-allowed", f"{request.method} is not allowed here",
                        headers={"Allow": allow} if allow else None)
            )
        if exc.status == 413:
            return registry.response(Problem("payload-too-large", "the body must be at most 64 KiB"))
        if exc.status < 500:
            return registry.response(Problem("validation", exc.reason))
        log.error("HTTP %s on %s %s: %s", exc.status, request.method, request.path, exc.reason)
        return registry.response(Problem("internal"))
    except psycopg_pool.PoolTimeout:
        log.error("no database connection for %s %s within the pool timeout", request.method, request.path)
        return registry.response(Problem("not-ready", "the database is not reachable"))
    except psycopg.Error as err:
        problem = registry.from_db_error(err)
        if problem is not None:
            return registry.response(problem)
        if isinstance(err, psycopg.OperationalError):
            # Connection lost, deadlock, serialization failure, timeout: retry later. (A COMMIT cut off with the
            # connection may still have landed: the retry, under the same natural key, answers with that booking.)
            log.error("database error on %s %s (SQLSTATE %s): %s", request.method, request.path, err.sqlstate,
                      str(err).strip())
            return registry.response(Problem("not-ready", "the database could not answer; retry"))
        log.exception("database error on %s %s (SQLSTATE %s)", request.method, request.path, err.sqlstate)
        return registry.response(Problem("internal"))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return registry.response(Problem("internal"))


async def problem_type(request: web.Request) -> web.Response:
    """GET /problems/{slug}: what a problem type means."""
    registry = request.app[REGISTRY_KEY]
    pt = registry.by_slug.get(request.match_info["slug"])
    if pt is None:
        raise Problem("not-found", "no such problem type")
    return web.json_response(pt.describe())


async def problem_index(request: web.Request) -> web.Response:
    """GET /problems: every problem type."""
    return web.json_response({"problems": [pt.describe() for pt in request.app[REGISTRY_KEY].all()]})
