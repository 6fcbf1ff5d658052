"""A real gateway for tests: served on 127.0.0.1:<free port> against the session's PostgreSQL cluster.

Shared by tests/test_gateway.py and tests/test_e2e.py (import the fixtures you use into the test module)::

    from tests.gateway_server import admin, client, gateway  # noqa: F401  (pytest fixtures)

- :class:`RunningGateway`: the aiohttp gateway in a background thread with its own event loop (AppRunner/TCPSite,
  logged in as festpay_terminal), stopped by :meth:`RunningGateway.stop` or at the end of a ``with`` block (the
  ``gateway`` fixture does it); :func:`start_admin_gateway` serves the admin site too (``/admin/``, logged in as
  festpay_web).
- :class:`Client`: plain HTTP (http.client) that signs a request for a terminal when asked; :class:`Reply` with a
  ``problem(slug, status)`` check of RFC 9457 answers; :func:`register_terminal` registers a terminal with it.
- fixtures ``gateway``, ``client`` (module scope) and ``admin`` (a superuser autocommit connection).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from python_gateway import signing
from python_gateway.gateway import GatewayOptions, gateway_service
from tests.conftest import TEST_DBNAME

PREFIX = "/terminal/v1"


class RunningGateway:
    """The gateway served on 127.0.0.1:<free port> by an event loop in a background thread."""

    def __init__(self, database_url: str, options: GatewayOptions):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop", daemon=True)
        self.thread.start()
        self._service = gateway_service(database_url, port=0, options=options)
        self.base_url: str = self._run(self._service.__aenter__())
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self._run(self._service.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_gateway(pg_cluster: Any, **options: Any) -> RunningGateway:
    """A gateway logged in as festpay_terminal to the test database (options: GatewayOptions fields)."""
    opts = {"pool_min_size": 1, "pool_max_size": 8, **options}
    return RunningGateway(pg_cluster.url(TEST_DBNAME, user="festpay_terminal"), GatewayOptions(**opts))


def start_admin_gateway(pg_cluster: Any, dbname: str = TEST_DBNAME, **options: Any) -> RunningGateway:
    """A gateway serving the terminal API and the admin site (/admin/, logged in as festpay_web) on ``dbname``
    (options: GatewayOptions fields, e.g. ``public_url``, ``dashboard_interval_s``)."""
    opts = {"pool_min_size": 1, "pool_max_size": 8, "apps": ("terminal", "admin"),
            "web_database_url": pg_cluster.url(dbname, user="festpay_web"), **options}
    return RunningGateway(pg_cluster.url(dbname, user="festpay_terminal"), GatewayOptions(**opts))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]

    def problem(self, slug: str, status: int) -> dict[str, Any]:
        assert self.status == status, (self.status, self.raw[:500])
        assert self.content_type == "application/problem+json", self.headers
        body = self.json
        assert body["type"] == f"/problems/{slug}", body
        assert body["status"] == status and body["title"]
        return body


@dataclass
class Terminal:
    """A terminal's credentials, as registration returned them."""

    assignment_id: int
    secret: str
    event_id: int
    tag_key: str


class Client:
    """Plain HTTP to the gateway; signs requests for a terminal when asked."""

    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                terminal: Terminal | None = None, headers: dict[str, str] | None = None,
                content_type: str | None = "application/json", timestamp: int | None = None) -> Reply:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs: dict[str, str] = {}
        if data and content_type:
            hdrs["Content-Type"] = content_type
        if terminal is not None:
            hdrs.update(signing.signed_headers(terminal.assignment_id, terminal.secret, method, path, data,
                                               timestamp=timestamp))
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data or None, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, terminal: Terminal | None = None, **kw: Any) -> Reply:
        return self.request("GET", path, terminal=terminal, **kw)

    def post(self, path: str, body: Any = None, terminal: Terminal | None = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, terminal=terminal, **kw)


def register_terminal(db: psycopg.Connection, client: Client, event_id: int, position: str, device: str) -> Terminal:
    """A terminal of the event's ``position``, registered over HTTP with a registration code made on ``db`` (the
    DBA's connection)."""
    code = scalar(db, "SELECT api.create_registration_code(%s, %s)", (event_id, position))
    reply = client.post(f"{PREFIX}/register", {"registration_code": code, "device": device})
    assert reply.status == 201, reply.raw
    body = reply.json
    return Terminal(body["assignment_id"], body["secret"], body["event_id"], body["tag_key"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalar(conn: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> Any:
    return conn.execute(query, params).fetchone()[0]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def admin(db_url: str) -> Iterator[psycopg.Connection]:
    """Superuser connection (autocommit) for setting up and checking the database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def gateway(pg_cluster) -> Iterator[RunningGateway]:
    """A real gateway on 127.0.0.1 for the module; stopped afterwards."""
    with start_gateway(pg_cluster) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Client:
    return Client(gateway.port)
