"""Hostile text on every route of the gateway: always a 4xx problem, never a 5xx, and the database unchanged.

Every route the app's router serves (cross-checked against the served OpenAPI document) gets a harmless request
that the ledger refuses or answers without changing anything; the hostile variants of it change one thing: the
body (lone surrogates and NUL in values and member names, nested; invalid UTF-8 bytes), the Content-Type (a charset
other than UTF-8, garbage), a path parameter (percent-encoded NUL, invalid UTF-8, surrogates, newlines, non-ASCII
digits, very long) or a header (Idempotency-Key, the X-Festpay-* signature headers, any other header; non-ASCII,
bytes that are not UTF-8, tabs, over-long values).  Signed routes are signed correctly, so the hostile part is
what is judged.

Requests go on the wire as raw bytes over a socket, so invalid UTF-8 really reaches the server.  Bytes HTTP/1.1
forbids (NUL, other control characters and DEL in a header, a raw non-ASCII request target, a line over 8190
bytes) are refused by aiohttp's HTTP parser with a plain-text 400 before the application runs; those are checked
as such.

After each test the ledger schema holds exactly what it held before (row counts and contents of every table) and
``api.check_invariants()`` is empty.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import pytest

from python_gateway import signing
from python_gateway.gateway.app import create_app
from python_gateway.gateway.auth import needs_signature
from python_gateway.gateway.problems import PROBLEM_CONTENT_TYPE, unicode_safe
from python_gateway.gateway.validation import unstorable_text
from tests.gateway_server import (  # noqa: F401  (admin, gateway: pytest fixtures)
    PREFIX,
    Client,
    RunningGateway,
    Terminal,
    admin,
    gateway,
    scalar,
)

IDEMPOTENCY_KEY = b"Idempotency-Key"
AUTH_HEADERS = (signing.HEADER_ASSIGNMENT, signing.HEADER_TIMESTAMP, signing.HEADER_SIGNATURE)
PARSER_REFUSED = "parser"  # the expected answer of bytes HTTP/1.1 forbids: aiohttp's own plain-text 400


# ----------------------------------------------------------------------------- the wire


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def show(self) -> str:
        return f"{self.status} {self.content_type} {self.body[:300]!r}"


@dataclass(frozen=True)
class Call:
    """One request as bytes: ``headers`` are added after the signature and replace headers of the same name."""

    method: str
    target: bytes
    body: bytes = b""
    content_type: bytes | None = b"application/json"
    terminal: Terminal | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def with_headers(self, *headers: tuple[bytes, bytes]) -> Call:
        return replace(self, headers=(*self.headers, *headers))

    def header_lines(self) -> list[tuple[bytes, bytes]]:
        lines: dict[bytes, tuple[bytes, bytes]] = {}
        if self.body and self.content_type is not None:
            lines[b"content-type"] = (b"Content-Type", self.content_type)
        if self.terminal is not None:
            path_qs = self.target.decode("ascii", "replace")  # a raw non-ASCII target never gets past the parser
            for name, value in signing.signed_headers(self.terminal.assignment_id, self.terminal.secret,
                                                      self.method, path_qs, self.body).items():
                lines[name.lower().encode()] = (name.encode(), value.encode())
        for name, value in self.headers:
            lines[name.lower()] = (name, value)
        return list(lines.values())


def send(port: int, call: Call) -> Answer:
    """``call`` over a fresh connection to 127.0.0.1:``port``, byte for byte."""
    head = [call.method.encode() + b" " + call.target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    names = {name.lower() for name, _ in call.headers}
    if b"content-length" not in names and b"transfer-encoding" not in names:
        head.append(b"Content-Length: %d" % len(call.body))
    head += [name + b": " + value for name, value in call.header_lines()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + call.body)
        response = http.client.HTTPResponse(sock, method=call.method)
        response.begin()
        data = response.read()
    content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
    return Answer(response.status, content_type, data)


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expect:
    """What an answer must be: one of ``problems`` (status, slug), or the route's harmless ``status``."""

    problems: frozenset[tuple[int, str]] = frozenset()
    status: int | None = None
    pointer: str | None = None
    """For a ``validation`` problem of the edge: the JSON pointer its first error names."""


def problem(status: int, slug: str, pointer: str | None = None) -> Expect:
    return Expect(frozenset({(status, slug)}), pointer=pointer)


VALIDATION = problem(400, "validation")
UNSUPPORTED = problem(415, "unsupported-media-type")
UNAUTHORIZED = problem(401, "unauthorized")
BAD_PATH = Expect(frozenset({(400, "validation"), (404, "not-found")}))


def verdict(answer: Answer, expect: Expect | str) -> str | None:
    """Why ``answer`` is wrong (None when right)."""
    if answer.status >= 500:
        return "server error"
    if expect == PARSER_REFUSED:
        ok = answer.status == 400 and answer.content_type in ("text/plain", PROBLEM_CONTENT_TYPE)
        return None if ok else "expected the HTTP parser's 400"
    assert isinstance(expect, Expect)
    if expect.status is not None:
        if answer.status != expect.status:
            return f"expected the harmless answer {expect.status}"
        if answer.status >= 400 and answer.content_type != PROBLEM_CONTENT_TYPE:
            return "a failure that is not a problem"
        return None
    if answer.content_type != PROBLEM_CONTENT_TYPE:
        return "not a problem"
    body = answer.json()
    if (answer.status, body.get("type", "").removeprefix("/problems/")) not in expect.problems:
        return f"expected one of {sorted(expect.problems)}"
    if body.get("status") != answer.status or not body.get("title"):
        return "a malformed problem"
    if expect.pointer is not None:
        errors = body.get("errors") or [{}]
        if errors[0].get("pointer") != unicode_safe(expect.pointer):
            return f"expected the pointer {unicode_safe(expect.pointer)!r}"
    return None


def run_all(port: int, cases: list[tuple[str, Call, Expect | str]]) -> None:
    """Sends every case; fails listing each wrong answer."""
    wrong = []
    for name, call, expect in cases:
        answer = send(port, call)
        why = verdict(answer, expect)
        if why:
            wrong.append(f"{name}: {call.method} {call.target[:80]!r}: {why}; got {answer.show()}")
    assert not wrong, f"{len(wrong)} of {len(cases)} wrong:\n" + "\n".join(wrong[:30])


# ----------------------------------------------------------------------------- routes and harmless requests


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    params: dict[str, str]
    """Harmless path parameter values."""
    body: dict[str, Any] | None
    """A harmless JSON body (POST routes)."""
    terminal: Terminal | None
    idempotent: bool
    """The document lists the Idempotency-Key header."""
    status: int = 0
    """The answer to the harmless request."""

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def takes_body(self) -> bool:
        return self.body is not None

    def target(self, **params: bytes) -> bytes:
        values = {name: value.encode() for name, value in self.params.items()} | params
        return re.sub(rb"\{(\w+)\}", lambda m: values[m.group(1).decode()], self.template.encode())

    def call(self, body: bytes | None = None, **params: bytes) -> Call:
        if body is None:
            body = b"" if self.body is None else json.dumps(self.body).encode()
        return Call(self.method, self.target(**params), body, terminal=self.terminal)

    @property
    def harmless(self) -> Expect:
        return Expect(status=self.status)


def served_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route of the app's router (built, not started)."""
    app = create_app("postgresql://nobody@127.0.0.1:1/unused")
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}


def new_uid() -> str:
    return secrets.token_hex(7).upper()


@dataclass
class World:
    event_id: int
    bar: Terminal
    till: Terminal
    uid: str
    known_number: int
    routes: list[Route] = field(default_factory=list)


def _register(client: Client, admin: psycopg.Connection, event_id: int, position: str) -> Terminal:
    registration_code = scalar(admin, "SELECT api.create_registration_code(%s, %s)", (event_id, position))
    reply = client.post(f"{PREFIX}/register", {"registration_code": registration_code, "device": position})
    assert reply.status == 201, reply.raw
    body = reply.json
    return Terminal(body["assignment_id"], body["secret"], body["event_id"], body["tag_key"])


def harmless_requests(world: World, beer: int) -> dict[tuple[str, str], tuple[dict[str, str], Any, Terminal | None]]:
    """(method, template) -> (path parameters, body, signing terminal) of a request that changes nothing:
    a refused registration, calls from the wrong kind of position, reads, an empty batch, an unseen tag."""
    number = 10**9 + secrets.randbelow(10**9)
    booking = {"terminal_tx_number": number, "uid": world.uid, "amount": 100}
    return {
        ("POST", f"{PREFIX}/register"): ({}, {"registration_code": "UNKNOWNCODE1", "device": "till"}, None),
        ("GET", f"{PREFIX}/config"): ({}, None, world.bar),
        ("POST", f"{PREFIX}/tags/{{uid}}/sync"): ({"uid": new_uid()}, {"tag_tx_number": 0, "balance": 0, "log": []},
                                                 world.bar),
        ("POST", f"{PREFIX}/reserve"): ({}, {"terminal_tx_number": number, "uid": world.uid, "tag_tx_number": 0,
                                             "amount": 450, "items": [{"product_id": beer, "quantity": 1}]},
                                        world.till),
        ("POST", f"{PREFIX}/topups"): ({}, {**booking, "payment": "cash"}, world.bar),
        ("POST", f"{PREFIX}/refunds"): ({}, booking, world.bar),
        ("POST", f"{PREFIX}/transactions"): ({}, {"transactions": []}, world.bar),
        ("GET", f"{PREFIX}/transactions/{{terminal_tx_number}}"): (
            {"terminal_tx_number": str(world.known_number)}, None, world.till),
        ("GET", f"{PREFIX}/transactions/{{terminal_tx_number}}/receipt"): (
            {"terminal_tx_number": str(world.known_number)}, None, world.till),
        ("GET", f"{PREFIX}/openapi.json"): ({}, None, None),
        ("GET", "/health"): ({}, None, None),
        ("GET", "/health/ready"): ({}, None, None),
        ("GET", "/problems"): ({}, None, None),
        ("GET", "/problems/{slug}"): ({"slug": "validation"}, None, None),
    }


@pytest.fixture(scope="module")
def world(gateway: RunningGateway, admin: psycopg.Connection) -> World:
    """An event with a sale and a top-up terminal, a funded tag, and a harmless request for every route."""
    client = Client(gateway.port)
    event_id = scalar(admin, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000)",
                      (f"Hostile input {secrets.token_hex(4)}",))
    merchant = scalar(admin, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    scalar(admin, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    scalar(admin, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    beer = scalar(admin, "SELECT api.create_product(%s, 'Beer', 450, 19)", (event_id,))
    bar = _register(client, admin, event_id, "Bar")
    till = _register(client, admin, event_id, "Top-up")
    uid, known = new_uid(), 10**9 + secrets.randbelow(10**9)
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": known, "uid": uid, "amount": 2000,
                                             "payment": "cash"}, terminal=till)
    assert reply.status == 201, reply.raw
    world = World(event_id, bar, till, uid, known)

    doc = client.get(f"{PREFIX}/openapi.json").json
    harmless = harmless_requests(world, beer)
    served = served_routes()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented <= served and served - documented == {("GET", "/problems")}, served ^ documented
    assert served == set(harmless), f"routes without a harmless request here: {served - set(harmless)}"
    for (method, template), (params, body, terminal) in sorted(harmless.items()):
        operation = doc["paths"].get(template, {}).get(method.lower(), {})
        idempotent = any(p.get("name") == IDEMPOTENCY_KEY.decode() for p in operation.get("parameters", []))
        assert (terminal is not None) == needs_signature(template), template
        route = Route(method, template, params, body, terminal, idempotent)
        answer = send(gateway.port, route.call())
        assert answer.status < 500, (route.name, answer.show())
        assert not operation or str(answer.status) in operation["responses"], (route.name, answer.show())
        world.routes.append(replace(route, status=answer.status))
    return world


def ledger_snapshot(admin: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and an MD5 of the contents of every table of schema ledger."""
    tables = [row[0] for row in admin.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'ledger' ORDER BY 1")]
    return {table: admin.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                                 f" FROM {table} t").fetchone() for table in tables}


@pytest.fixture
def unchanged(world: World, admin: psycopg.Connection) -> Iterator[World]:
    """The world; afterwards the ledger must be as it was and its invariants hold."""
    before = ledger_snapshot(admin)
    yield world
    after = ledger_snapshot(admin)
    assert {t: after[t] for t in after if after[t] != before.get(t)} == {}, "the ledger changed"
    assert admin.execute("SELECT * FROM api.check_invariants()").fetchall() == []


# ----------------------------------------------------------------------------- hostile material

HOSTILE_TEXT = {
    "lone high surrogate": "\ud800",
    "lone low surrogate": "\udfff",
    "reversed surrogate pair": "x\udc00\ud800",
    "surrogate-escaped byte": "\udcff",
    "NUL": "\x00",
    "NUL inside": "ab\x00cd",
}

# JSON text that is not UTF-8, or not JSON: (name, bytes put where a string's content goes).
HOSTILE_BYTES = {
    "invalid byte": b"\xff",
    "overlong NUL": b"\xc0\x80",
    "UTF-8 encoded surrogate": b"\xed\xa0\x80",
    "truncated sequence": b"\xe2\x82",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    "raw NUL byte": b"\x00",
    "raw control byte": b"\x1b",
}

BAD_CONTENT_TYPES = {
    "latin-1": b"application/json; charset=latin-1",
    "iso-8859-1": b"application/json; charset=ISO-8859-1",
    "utf-16": b"application/json; charset=utf-16",
    "quoted utf-16": b'application/json; charset="utf-16"',
    "empty charset": b"application/json; charset=",
    "charset without a value": b"application/json; charset",
    "a second charset": b"application/json; charset=utf-8; charset=latin-1",
    "non-UTF-8 charset": b"application/json; charset=\xff\xfe",
    "garbage": b"\xff\xfe\xfd;;;===",
    "non-ASCII type": b"application/js\xc3\xb6n",
    "text": b"text/plain; charset=utf-8",
}

GOOD_CONTENT_TYPES = {
    "UTF-8": b"application/json; charset=UTF-8",
    "utf-8 unspaced": b"application/json;charset=utf-8",
    "quoted utf-8": b'application/json; charset="utf-8"',
}

# Path parameter values as sent (percent-encoded): each is refused (400) or matches no route (404).
HOSTILE_SEGMENTS = {
    "NUL": b"%00",
    "NUL after digits": b"12%00",
    "invalid UTF-8": b"%ff",
    "UTF-8 encoded surrogate": b"%ed%a0%80",
    "overlong NUL": b"%c0%80",
    "newline": b"%0a",
    "uid then newline": b"04A1B2C3%0A",
    "digits then newline": b"12%0A",
    "Arabic-Indic digit": b"%d9%a1%d9%a2",
    "fullwidth digit": b"%ef%bc%91",
    "underscore in number": b"1_0",
    "plus sign": b"+1",
    "leading space": b"%201",
    "escaped slash": b"..%2F..",
    "lone percent": b"%",
    "bad escape": b"%zz",
    "long letters": b"A" * 4000,
    "long digits": b"9" * 4000,
}

# Request targets HTTP/1.1 forbids: the parser refuses them.
RAW_SEGMENTS = {
    "raw invalid UTF-8": b"\xff",
    "raw UTF-8 encoded surrogate": b"\xed\xa0\x80",
    "raw DEL": b"\x7f",
    "line over 8190 bytes": b"A" * 9000,
}

# Header values that reach the application (aiohttp decodes bytes that are not UTF-8 as lone surrogates).
HOSTILE_HEADER_VALUES = {
    "non-ASCII": "k\u00e9".encode(),
    "invalid UTF-8": b"k\xff\xfe",
    "UTF-8 encoded surrogate": b"\xed\xa0\x80",
    "Arabic-Indic digits": "\u0661\u0662".encode(),
    "space inside": b"a b",
    "tab inside": b"a\tb",
    "over-long": b"k" * 4000,
}

# Header values HTTP/1.1 forbids: the parser refuses them.
FORBIDDEN_HEADER_VALUES = {
    "NUL": b"k\x00",
    "control character": b"k\x01",
    "escape": b"k\x1b",
    "DEL": b"k\x7f",
    "bare CR": b"k\rx",
    "over 8190 bytes": b"k" * 9000,
}

OTHER_HEADERS = (b"Accept", b"Accept-Language", b"User-Agent", b"Cookie", b"Origin", b"X-Forwarded-Host",
                 b"X-Request-Id", b"Idempotency-Replayed")


def injections(body: dict[str, Any], text: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, ``body`` with ``text`` put there, JSON pointer of ``text``): values and member names, nested."""
    yield "value", {**body, "x": text}, "/x"
    yield "member name", {**body, text: 1}, "/" + text
    yield "array item", {**body, "x": [0, text]}, "/x/1"
    yield "nested value", {**body, "x": {"a": [0, {"b": text}]}}, "/x/a/1/b"
    yield "nested member name", {**body, "x": [{"k": {text: None}}]}, "/x/0/k/" + text
    for name, value in body.items():
        if isinstance(value, str):
            yield f"field {name}", {**body, name: text}, "/" + name
        if isinstance(value, list) and value and isinstance(value[0], dict):
            yield f"field {name}[0]", {**body, name: [{**value[0], "note": text}, *value[1:]]}, f"/{name}/0/note"


def with_bytes(body: dict[str, Any], raw: bytes) -> Iterator[tuple[str, bytes]]:
    """``body`` as JSON with ``raw`` inside a string value, and inside a member name."""
    marker = "MARKER" + secrets.token_hex(4)
    yield "value", json.dumps({**body, "x": marker}).encode().replace(marker.encode(), raw)
    yield "member name", json.dumps({**body, marker: 1}).encode().replace(marker.encode(), raw)


# ----------------------------------------------------------------------------- tests


def test_unstorable_text_finds_every_bad_string():
    document = {"ok": "fine \U0001f37a", "a": ["x", {"b\x00": 1, "c": "\ud800"}], "~/\udfff": "y", "n": 1}
    assert unstorable_text(document) == [
        ("/a/1/b\x00", "the member name contains NUL (U+0000)"),
        ("/a/1/c", "contains a lone surrogate (U+D800)"),
        ("/~0~1\udfff", "the member name contains a lone surrogate (U+DFFF)"),
    ]
    assert unstorable_text(json.loads('{"pair": "\\ud83c\\udf7a", "escaped": "\\\\u0000"}')) == []
    assert unstorable_text("\x00") == [("", "contains NUL (U+0000)")]


def test_reported_lone_surrogate_in_register_is_a_validation_problem(unchanged: World, gateway: RunningGateway):
    """Also with an Idempotency-Key, twice: the key is never claimed (the ledger, idempotency keys included, is
    unchanged)."""
    body = b'{"registration_code": "UNKNOWNCODE1", "device": "\\ud800"}'
    call = Call("POST", f"{PREFIX}/register".encode(), body)
    keyed = call.with_headers((IDEMPOTENCY_KEY, b"hostile-" + secrets.token_hex(8).encode()))
    run_all(gateway.port, [("no key", call, problem(400, "validation", "/device")),
                           ("with a key", keyed, problem(400, "validation", "/device")),
                           ("the same key again", keyed, problem(400, "validation", "/device"))])
    answer = send(gateway.port, keyed)
    assert answer.json()["errors"] == [{"pointer": "/device", "detail": "contains a lone surrogate (U+D800)"}]


def test_a_final_newline_does_not_pass_a_pattern(unchanged: World, gateway: RunningGateway):
    """Patterns end at the end of the text (ECMA-262), not before a final newline: the edge refuses it."""
    cases = []
    for route in unchanged.routes:
        if route.body and "uid" in route.body:
            body = json.dumps({**route.body, "uid": route.body["uid"] + "\n"}).encode()
            cases.append((f"{route.name} uid with a newline", route.call(body), problem(400, "validation", "/uid")))
    assert len(cases) == 3
    run_all(gateway.port, cases)


def test_hostile_json_text_in_bodies(unchanged: World, gateway: RunningGateway):
    """Lone surrogates and NUL, escaped in JSON, in values and member names at any depth: 400 with the pointer."""
    cases = []
    for route in unchanged.routes:
        for text_name, text in HOSTILE_TEXT.items():
            base = route.body if route.takes_body else {"x": "y"}
            for where, document, pointer in injections(base, text):
                expect = problem(400, "validation", pointer) if route.takes_body else route.harmless
                cases.append((f"{route.name} {text_name} in {where}",
                              route.call(json.dumps(document).encode()), expect))
    run_all(gateway.port, cases)


def test_bodies_that_are_not_utf8(unchanged: World, gateway: RunningGateway):
    """Bytes that are not UTF-8 (or not allowed in JSON text) anywhere in a body: 400."""
    cases = []
    for route in unchanged.routes:
        base = route.body if route.takes_body else {"x": "y"}
        expect = VALIDATION if route.takes_body else route.harmless
        for bytes_name, raw in HOSTILE_BYTES.items():
            for where, body in with_bytes(base, raw):
                cases.append((f"{route.name} {bytes_name} in a {where}", route.call(body), expect))
        for name, body in (("UTF-8 BOM", b"\xef\xbb\xbf" + json.dumps(base).encode()),
                           ("UTF-16", json.dumps(base).encode("utf-16")),
                           ("Latin-1", json.dumps({**base, "x": "\u00e9"}, ensure_ascii=False).encode("latin-1"))):
            cases.append((f"{route.name} {name} body", route.call(body), expect))
    run_all(gateway.port, cases)


def test_content_types(unchanged: World, gateway: RunningGateway):
    """A charset other than UTF-8, or garbage: 415; UTF-8 spelled any way: the harmless answer."""
    cases = []
    for route in unchanged.routes:
        call = route.call() if route.takes_body else route.call(b'{"x": "y"}')
        for name, content_type in BAD_CONTENT_TYPES.items():
            expect = UNSUPPORTED if route.takes_body else route.harmless
            cases.append((f"{route.name} {name}", replace(call, content_type=content_type), expect))
        for name, content_type in GOOD_CONTENT_TYPES.items():
            cases.append((f"{route.name} {name}", replace(call, content_type=content_type), route.harmless))
        for name, content_type in FORBIDDEN_HEADER_VALUES.items():
            cases.append((f"{route.name} Content-Type {name}",
                          replace(call, content_type=b"application/json" + content_type), PARSER_REFUSED))
    run_all(gateway.port, cases)


def test_hostile_path_parameters(unchanged: World, gateway: RunningGateway):
    """Percent-encoded NUL, invalid UTF-8, surrogates, newlines, non-ASCII digits, long values: 400 or 404."""
    cases = []
    for route in unchanged.routes:
        for param in route.params:
            for name, segment in HOSTILE_SEGMENTS.items():
                cases.append((f"{route.name} {param}={name}", route.call(**{param: segment}), BAD_PATH))
            for name, segment in RAW_SEGMENTS.items():
                cases.append((f"{route.name} {param}={name}", route.call(**{param: segment}), PARSER_REFUSED))
    assert len(cases) >= 4 * len(HOSTILE_SEGMENTS)
    run_all(gateway.port, cases)


def test_hostile_idempotency_keys(unchanged: World, gateway: RunningGateway):
    """Where the route takes an Idempotency-Key, any but 1 to 255 visible ASCII characters is a 400 (before the
    key is claimed); elsewhere the header is ignored."""
    cases = []
    for route in unchanged.routes:
        expect = problem(400, "validation", "/Idempotency-Key") if route.idempotent else route.harmless
        for name, value in {**HOSTILE_HEADER_VALUES, "empty": b"", "256 characters": b"k" * 256}.items():
            cases.append((f"{route.name} key {name}", route.call().with_headers((IDEMPOTENCY_KEY, value)), expect))
        for name, value in FORBIDDEN_HEADER_VALUES.items():
            cases.append((f"{route.name} key {name}", route.call().with_headers((IDEMPOTENCY_KEY, value)),
                          PARSER_REFUSED))
    assert sum(route.idempotent for route in unchanged.routes) == 2
    run_all(gateway.port, cases)


def test_hostile_signature_headers(unchanged: World, gateway: RunningGateway):
    """Any of the three X-Festpay-* headers replaced by hostile bytes: 401 where a signature is needed."""
    cases = []
    for route in unchanged.routes:
        expect = UNAUTHORIZED if route.terminal is not None else route.harmless
        for header in AUTH_HEADERS:
            values = {**HOSTILE_HEADER_VALUES, "digits then non-ASCII": "1\u00e9".encode(),
                      "empty": b"", "huge number": b"9" * 30}
            for name, value in values.items():
                cases.append((f"{route.name} {header} {name}",
                              route.call().with_headers((header.encode(), value)), expect))
            for name, value in FORBIDDEN_HEADER_VALUES.items():
                cases.append((f"{route.name} {header} {name}", route.call().with_headers((header.encode(), value)),
                              PARSER_REFUSED))
    run_all(gateway.port, cases)


def test_hostile_other_headers(unchanged: World, gateway: RunningGateway):
    """Headers the gateway does not judge are ignored, whatever their bytes; malformed framing is refused."""
    cases = []
    for route in unchanged.routes:
        for header in OTHER_HEADERS:
            for name, value in HOSTILE_HEADER_VALUES.items():
                cases.append((f"{route.name} {header.decode()} {name}", route.call().with_headers((header, value)),
                              route.harmless))
        for name, extra in (("non-token header name", (b"X-\xff", b"1")),
                            ("Content-Length not a number", (b"Content-Length", b"abc")),
                            ("negative Content-Length", (b"Content-Length", b"-1")),
                            ("Transfer-Encoding garbage", (b"Transfer-Encoding", b"\xff")),
                            ("a second Host", (b"Host", b"\xff"))):
            cases.append((f"{route.name} {name}", route.call().with_headers(extra), PARSER_REFUSED))
    run_all(gateway.port, cases)
