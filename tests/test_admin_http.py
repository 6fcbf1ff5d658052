"""The admin site over real HTTP against a real gateway (terminal API + admin site, /admin/ logged in as festpay_web).

The module runs in a database of its own (``festpay_admin_http``, migrated here): its event is the newest, its
admin users are the only ones, and the first-admin bootstrap sees an empty user table.

- every page renders for each role (200) or is refused (403); POSTs of a role without the privilege change nothing;
- a POST without the CSRF token, with a wrong one, without an Origin or with a foreign Origin is a 403 and changes
  nothing (checked through the api); the sign-in form is guarded the same way;
- a new session token at every sign-in; sign-out revokes (the old cookie leads to the sign-in page); five wrong
  passwords lock the user; the cookie's attributes over http and (FESTPAY_PUBLIC_URL) https;
- injection-looking search input is harmless and escaped; security headers on pages, error pages and files;
- forms refused by the database show the message next to the field; registration codes with a QR code; revoking a
  terminal makes its next call a 401; transactions paginate by keyset; reports download as CSV; one dashboard
  summary query per interval serves every connected viewer (server-sent events);
- ``festpay admin create-user`` and the first-admin bootstrap of ``festpay run``.
"""

from __future__ import annotations

import dataclasses
import html
import http.client
import itertools
import json
import os
import re
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from markupsafe import escape

from python_gateway import cli
from python_gateway.config import PROJECT_ROOT, load_settings
from tests.conftest import own_database
from tests.gateway_server import (PREFIX, Client, RunningGateway, Terminal, register_terminal, scalar,
                                  start_admin_gateway)

DBNAME = "festpay_admin_http"
PASSWORD = "correct horse battery staple"
ROLES = ("admin", "finance", "support", "viewer")
INVALID = (400, 422)  # the status of the validation problem (the database's problem table says which)
REPORTS = ("sales-per-merchant", "sales-per-product", "sales-per-hour", "vat", "topups", "trial-balance",
           "settlement")

_numbers = itertools.count(1)


# ----------------------------------------------------------------------------- an HTTP client with cookies


@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def location(self) -> str:
        return self.header("Location")

    def messages(self) -> list[str]:
        """The error messages the page shows (form, field and error-page detail)."""
        found = re.findall(r'class="(?:form-error|field-error|detail)"[^>]*>(.*?)</(?:p|span)>', self.text, re.S)
        return [re.sub(r"<[^>]+>", "", m).strip() for m in found]

    def csrf(self) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert match, self.text[:2000]
        return html.unescape(match.group(1))


@dataclass
class Session:
    """One browser: a cookie jar, no redirects followed, a default Origin of the site itself."""

    port: int
    origin: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookie_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Page:
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            page = Page(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        for line in page.headers.get_all("Set-Cookie") or []:
            self.set_cookie_lines.append(line)
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return page

    def get(self, path: str, headers: dict[str, str] | None = None) -> Page:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, Any], *, csrf: str | None = None, origin: str | None | bool = True,
             headers: dict[str, str] | None = None) -> Page:
        data = dict(form)
        if csrf is not None:
            data["csrf_token"] = csrf
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if origin is True:
            hdrs["Origin"] = self.origin or ""
        elif isinstance(origin, str):
            hdrs["Origin"] = origin
        return self.request("POST", path, urlencode(data).encode(), hdrs)

    def csrf(self, path: str = "/admin/") -> str:
        return self.get(path).csrf()

    def login(self, username: str, password: str = PASSWORD) -> Page:
        token = self.get("/admin/login").csrf()
        return self.post("/admin/login", {"username": username, "password": password}, csrf=token)

    def session_token(self) -> str | None:
        return self.cookies.get("festpay_admin") or self.cookies.get("__Host-festpay_admin")

    def portal_login(self, uid: str, pin: str, headers: dict[str, str] | None = None) -> Page:
        token = self.get("/portal/login").csrf()
        return self.post("/portal/login", {"uid": uid, "pin": pin}, csrf=token, headers=headers)


def admin_session(port: int, username: str) -> Session:
    """A browser signed in to the admin site as ``username`` (with PASSWORD): the sign-in leads to /admin/."""
    s = Session(port)
    page = s.login(username)
    assert page.status == 303 and page.location == "/admin/", (page.status, page.text[:500])
    return s


def portal_session(port: int, uid: str, pin: str) -> Session:
    """A browser signed in to the portal with a wristband's UID and PIN: the sign-in leads to /portal/."""
    s = Session(port)
    page = s.portal_login(uid, pin)
    assert page.status == 303 and page.location == "/portal/", (page.status, page.text[:1000])
    return s


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def db(pg_cluster) -> Iterator[psycopg.Connection]:
    """Superuser connection to this module's own migrated database."""
    with own_database(pg_cluster, DBNAME) as conn:
        yield conn


@pytest.fixture(scope="module")
def first_admin_lines(db, tmp_path_factory) -> tuple[list[tuple[str, str]], Any]:
    """cli.first_admin on the empty user table (before any other user exists), with a data dir of its own."""
    settings = dataclasses.replace(load_settings(), data_dir=tmp_path_factory.mktemp("data"), database_url=None,
                                   public_url=None, http_port=8080)
    return cli.first_admin(db.info.dsn, settings), settings


@pytest.fixture(scope="module")
def world(db, first_admin_lines) -> dict[str, Any]:
    """The event (the newest), a merchant, positions, products, and one admin user per role."""
    name = f"Admin HTTP test {secrets.token_hex(3)}"
    event_id = scalar(db, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_topup_fee_card => 50)", (name,))
    merchant = scalar(db, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    scalar(db, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    scalar(db, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    beer = scalar(db, "SELECT api.create_product(%s, 'Beer', 450, 19)", (event_id,))
    users = {}
    for role in ROLES:
        username = f"http-{role}"
        scalar(db, "SELECT * FROM api.create_admin_user(%s, %s, %s)", (username, role, PASSWORD))
        users[role] = username
    return {"event_id": event_id, "event_name": name, "merchant": merchant, "beer": beer, "users": users}


@pytest.fixture(scope="module")
def site(pg_cluster, world) -> Iterator[RunningGateway]:
    with start_admin_gateway(pg_cluster, dbname=DBNAME, dashboard_interval_s=0.3) as gw:
        yield gw


@pytest.fixture(scope="module")
def terminal_client(site: RunningGateway) -> Client:
    return Client(site.port)


@pytest.fixture(scope="module")
def sales(db, world, terminal_client) -> dict[str, Any]:
    """A funded tag with a committed sale of two beers, via the terminal API."""
    client = terminal_client
    till = register_terminal(db, client, world["event_id"], "Top-up", "top-up till")
    bar = register_terminal(db, client, world["event_id"], "Bar", "bar till")
    uid = secrets.token_hex(7).upper()
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": next(_numbers), "uid": uid, "amount": 2000,
                                             "payment": "cash"}, terminal=till)
    assert reply.status == 201, reply.raw
    topup_id = reply.json["transaction_id"]
    number = next(_numbers)
    items = [{"product_id": world["beer"], "quantity": 2, "unit_price": 450}]
    reply = client.post(f"{PREFIX}/reserve", {"terminal_tx_number": number, "uid": uid, "tag_tx_number": 0,
                                              "amount": 900, "items": items}, terminal=bar)
    assert reply.status == 201, reply.raw
    sale_id = reply.json["transaction_id"]
    reply = client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": number, "state": "Committed", "uid": uid, "amount": 900, "tag_tx_number": 0,
         "time": "2025-07-01T12:00:00Z", "items": items}]}, terminal=bar)
    assert reply.status == 200 and reply.json["results"][0]["outcome"] == "booked", reply.raw
    return {"uid": uid, "topup_id": topup_id, "sale_id": sale_id, "till": till, "bar": bar}


@pytest.fixture(scope="module")
def sessions(site, world) -> dict[str, Session]:
    """One signed-in browser per role."""
    return {role: admin_session(site.port, username) for role, username in world["users"].items()}


def api_rows(db, function: str, *args: Any) -> list[tuple[Any, ...]]:
    placeholders = ", ".join(["%s"] * len(args))
    return db.execute(f"SELECT * FROM api.{function}({placeholders})", args).fetchall()


# ----------------------------------------------------------------------------- pages per role


def pages(sales: dict[str, Any]) -> list[str]:
    return [
        "/admin/", "/admin/event", "/admin/merchants", "/admin/positions", "/admin/products", "/admin/terminals",
        "/admin/tags", "/admin/customers", f"/admin/customers?q={sales['uid'][:4]}",
        f"/admin/customers/{sales['uid']}", "/admin/transactions", f"/admin/transactions/{sales['sale_id']}",
        f"/admin/transactions/{sales['topup_id']}", "/admin/queue", "/admin/reports",
        *[f"/admin/reports/{name}" for name in REPORTS], "/admin/fiscal", "/admin/password", "/admin/logout",
        "/admin/users", "/admin/audit",
    ]


ADMIN_ONLY = ("/admin/users", "/admin/audit")


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_or_refuses_per_role(role, sessions, sales):
    s = sessions[role]
    for path in pages(sales):
        page = s.get(path)
        expected = 403 if path in ADMIN_ONLY and role != "admin" else 200
        assert page.status == expected, (role, path, page.status, page.text[:3000])
        assert page.header("Content-Type").startswith("text/html"), (path, page.headers)
        if expected == 403:
            assert "privilege" in page.text.lower() or "forbidden" in page.text.lower()


def test_pages_without_session_lead_to_sign_in(site, sales):
    s = Session(site.port)
    for path in pages(sales):
        if path == "/admin/logout":
            continue
        page = s.get(path)
        assert page.status == 303, (path, page.status)
        assert page.location.startswith("/admin/login?next="), page.location
    assert s.get("/admin").status in (301, 308)
    assert s.get("/admin/no-such-page").status == 404


@pytest.mark.parametrize("role", ("finance", "support", "viewer"))
def test_changes_without_the_privilege_are_refused_and_change_nothing(role, db, sessions, world):
    s = sessions[role]
    token = s.csrf()
    admin_token = sessions["admin"].session_token()
    before = api_rows(db, "admin_merchants", admin_token)
    page = s.post("/admin/merchants", {"name": f"Nope {role}"}, csrf=token)
    assert page.status == 403, page.text[:2000]
    assert api_rows(db, "admin_merchants", admin_token) == before
    page = s.post("/admin/users", {"username": f"nope-{role}", "role": "admin", "password": PASSWORD * 2},
                  csrf=token)
    assert page.status == 403
    assert all(r[1] != f"nope-{role}" for r in api_rows(db, "admin_users", admin_token))


# ----------------------------------------------------------------------------- CSRF and Origin


def test_post_without_csrf_or_with_foreign_origin_is_refused(db, sessions):
    s = sessions["admin"]
    token = s.csrf("/admin/merchants")
    admin_token = s.session_token()

    def merchant_names() -> set[str]:
        return {r[1] for r in api_rows(db, "admin_merchants", admin_token)}

    cases = {
        "no token": dict(csrf=None),
        "wrong token": dict(csrf="x" * 43),
        "other session's token": dict(csrf=sessions["viewer"].csrf()),
        "foreign origin": dict(csrf=token, origin="https://evil.example"),
        "null origin": dict(csrf=token, origin="null"),
        "no origin": dict(csrf=token, origin=False),
        "origin of another port": dict(csrf=token, origin="http://127.0.0.1:1"),
    }
    for why, kwargs in cases.items():
        name = f"CSRF {why}"
        page = s.post("/admin/merchants", {"name": name}, **kwargs)
        assert page.status == 403, (why, page.status, page.text[:1000])
        assert name not in merchant_names(), why
    # the same form with both is accepted
    page = s.post("/admin/merchants", {"name": "CSRF accepted"}, csrf=token)
    assert page.status == 303 and page.location == "/admin/merchants?done=saved", page.text[:2000]
    assert "CSRF accepted" in merchant_names()


def test_sign_in_form_is_guarded_too(site, world):
    s = Session(site.port)
    token = s.get("/admin/login").csrf()
    form = {"username": world["users"]["viewer"], "password": PASSWORD}
    assert s.post("/admin/login", form, csrf=None).status == 403
    assert s.post("/admin/login", form, csrf="forged").status == 403
    assert s.post("/admin/login", form, csrf=token, origin="https://evil.example").status == 403
    assert s.session_token() is None
    assert s.post("/admin/login", form, csrf=token).status == 303
    # a fresh browser without the double-submit cookie cannot reuse the value
    other = Session(site.port)
    assert other.post("/admin/login", form, csrf=token).status == 403


# ----------------------------------------------------------------------------- sessions


def test_new_session_token_at_every_sign_in_and_cookie_attributes(site, world):
    s = Session(site.port)
    assert s.login(world["users"]["viewer"]).status == 303
    first = s.session_token()
    line = next(x for x in s.set_cookie_lines if x.startswith("festpay_admin="))
    attributes = {a.strip().lower() for a in line.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/admin/"} <= attributes, line
    assert "secure" not in attributes
    assert s.login(world["users"]["viewer"]).status == 303
    second = s.session_token()
    assert first and second and first != second
    assert s.get("/admin/").status == 200


def test_sign_out_revokes_the_session(site, db, world):
    s = Session(site.port)
    assert s.login(world["users"]["support"]).status == 303
    old = s.session_token()
    page = s.post("/admin/logout", {}, csrf=s.csrf())
    assert page.status == 303 and page.location.startswith("/admin/login"), page.text[:500]
    assert s.session_token() is None
    # the old cookie, sent again, leads to the sign-in page: the session is revoked in the database
    stale = Session(site.port, cookies={"festpay_admin": old})
    page = stale.get("/admin/customers")
    assert page.status == 303 and page.location.startswith("/admin/login?next="), page.location
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT * FROM api.admin_whoami(%s)", (old,))
    assert err.value.sqlstate == "FP070"


def test_lockout_after_five_failures(site, db, world):
    scalar(db, "SELECT * FROM api.create_admin_user(%s, 'viewer', %s)", ("http-locked", PASSWORD))
    s = Session(site.port)
    refused = []
    for _ in range(5):
        page = s.login("http-locked", "wrong password 123")
        assert page.status == 401
        refused.append(page)
    page = s.login("http-locked", PASSWORD)
    assert page.status == 401 and s.session_token() is None
    # the answer does not say whether the user exists or is locked
    unknown = s.login("http-nobody-at-all", PASSWORD)
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", page.text) .replace("http-locked", "") == \
        strip.sub("", unknown.text).replace("http-nobody-at-all", "")
    assert s.login(world["users"]["viewer"]).status == 303


def test_https_public_url_uses_host_prefixed_secure_cookies(pg_cluster, world):
    gw = start_admin_gateway(pg_cluster, dbname=DBNAME, public_url="https://pay.example.org")
    try:
        s = Session(gw.port, origin="https://pay.example.org")
        token = s.get("/admin/login").csrf()
        assert s.post("/admin/login", {"username": world["users"]["viewer"], "password": PASSWORD}, csrf=token,
                      origin=f"http://127.0.0.1:{gw.port}").status == 403  # only the public origin counts
        page = s.post("/admin/login", {"username": world["users"]["viewer"], "password": PASSWORD}, csrf=token)
        assert page.status == 303, page.text[:1000]
        line = next(x for x in s.set_cookie_lines if x.startswith("__Host-festpay_admin="))
        attributes = {a.strip().lower() for a in line.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/", "secure"} <= attributes, line
        assert "domain" not in {a.split("=")[0] for a in attributes}
        assert s.get("/admin/").status == 200
    finally:
        gw.stop()


# ----------------------------------------------------------------------------- input, escaping, headers


@pytest.mark.parametrize("text", ["' OR 1=1 --", "<script>alert(1)</script>", "%' OR '1'='1", "\"><img src=x>"])
def test_injection_looking_search_is_harmless_and_escaped(text, sessions, sales):
    s = sessions["support"]
    page = s.get("/admin/customers?" + urlencode({"q": text}))
    assert page.status == 200, page.text[:2000]
    assert "No tag found." in page.text
    assert sales["uid"] not in page.text  # the condition did not turn true for every tag
    assert str(escape(text)) in page.text  # shown back, escaped
    assert "<script>alert" not in page.text and "<img src=x>" not in page.text
    page = s.get("/admin/transactions?" + urlencode({"uid": text}))
    assert page.status in (200, *INVALID) and "No transactions match." in page.text
    assert "<script>alert" not in page.text and "<img src=x>" not in page.text


def test_security_headers(site, sessions):
    s = sessions["viewer"]
    for page in (s.get("/admin/"), Session(site.port).get("/admin/login"), s.get("/admin/no-such-page"),
                 s.get("/admin/static/site.css")):
        csp = page.header("Content-Security-Policy")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.header("Referrer-Policy") == "same-origin"
        assert page.header("X-Content-Type-Options") == "nosniff"
    assert s.get("/admin/").header("Cache-Control") == "no-store"
    assert s.get("/admin/no-such-page").status == 404
    # no inline scripts or styles in the pages themselves
    for path in ("/admin/", "/admin/reports/sales-per-hour", "/admin/login"):
        text = s.get(path).text
        assert "<style" not in text and " style=" not in text, path
        for tag in re.findall(r"<script[^>]*>", text):
            assert 'src="' in tag or 'type="application/json"' in tag, (path, tag)


def test_field_errors_appear_next_to_the_field(db, sessions):
    s = sessions["admin"]
    token = s.csrf("/admin/products")
    page = s.post("/admin/products", {"form": "product-new", "name": "Bad price", "price": "abc",
                                      "vat_rate": "19"}, csrf=token)
    assert page.status in INVALID, page.text[:2000]
    assert re.search(r'name="price"[^>]*aria-invalid="true"', page.text), page.text
    assert 'id="product-new-price-error"' in page.text
    assert 'value="Bad price"' in page.text  # the submitted values come back
    page = s.post("/admin/products", {"form": "product-new", "name": "Bad VAT", "price": "1.00",
                                      "vat_rate": "150"}, csrf=token)
    assert page.status in INVALID and 'id="product-new-vat_rate-error"' in page.text, page.text[:3000]
    assert not [r for r in api_rows(db, "admin_products", s.session_token()) if r[1].startswith("Bad ")]
    # a name that is taken: the database's message next to the merchant name
    page = s.post("/admin/merchants", {"form": "merchant-new", "name": "Bar"}, csrf=token)
    assert page.status in INVALID and 'id="merchant-new-name-error"' in page.text and "taken" in page.text


def test_event_settings_round_trip(db, sessions):
    s = sessions["admin"]
    page = s.get("/admin/event")
    assert 'name="max_balance" type="text" value="500.00"' in page.text, page.text[:4000]
    form = {k: v for k, v in re.findall(r'<input id="event-[^"]+" name="([^"]+)" type="[^"]+" value="([^"]*)"',
                                        page.text)}
    token = page.csrf()
    # the database's rule: a seller needs the whole address (the message sits next to the street)
    form.update(form="event", seller_name="Festival GmbH", tax_number="12/345/67890", seller_city="Berlin",
                seller_postcode="10115", seller_street="", min_topup="6.00")
    page = s.post("/admin/event", form, csrf=token)
    assert page.status in INVALID and 'id="event-seller_street-error"' in page.text, page.messages()
    assert 'value="Festival GmbH"' in page.text
    form.update(seller_street="Festweg 1")
    page = s.post("/admin/event", form, csrf=token)
    assert page.status == 303 and page.location == "/admin/event?done=saved", page.messages()
    event = scalar(db, "SELECT * FROM api.admin_event(%s)", (s.session_token(),))
    assert event["min_topup"] == 600 and event["tax_number"] == "12/345/67890" and event["seller_city"] == "Berlin"


# ----------------------------------------------------------------------------- terminals, tags


def test_registration_code_with_qr_and_revocation(db, sessions, terminal_client, world):
    s = sessions["admin"]
    page = s.get("/admin/terminals")
    position = re.search(r'<option value="(\d+)">Top-up \(topup\)</option>', page.text)
    assert position, page.text[:4000]
    codes_before = scalar(db, "SELECT count(*) FROM ledger.registration_code")
    # POST -> redirect -> GET: the code is made once and shown once on /admin/terminals
    page = s.post("/admin/terminals/code", {"position_id": position.group(1)}, csrf=page.csrf())
    assert page.status == 303 and page.location.startswith("/admin/terminals?code="), (page.status, page.text[:2000])
    shown_at = page.location
    page = s.get(shown_at)
    assert page.status == 200, page.text[:2000]
    code = re.search(r'id="registration-code">([^<]+)<', page.text).group(1)
    assert "<svg" in page.text and 'class="qr"' in page.text
    assert f".venv/bin/festpay terminal register --name NAME --code {code}" in page.text
    again = s.get(shown_at)  # a reload makes no new code and does not show this one again
    assert again.status == 200 and 'id="registration-code"' not in again.text and code not in again.text
    assert "shown once" in again.text
    assert scalar(db, "SELECT count(*) FROM ledger.registration_code") == codes_before + 1
    # another admin cannot read the note
    page = s.post("/admin/terminals/code", {"position_id": position.group(1)}, csrf=s.csrf("/admin/terminals"))
    assert 'id="registration-code"' not in sessions["viewer"].get(page.location).text
    reply = terminal_client.post(f"{PREFIX}/register", {"registration_code": code, "device": "scanned"})
    assert reply.status == 201, reply.raw
    terminal = Terminal(reply.json["assignment_id"], reply.json["secret"], reply.json["event_id"],
                        reply.json["tag_key"])
    assert terminal_client.get(f"{PREFIX}/config", terminal=terminal).status == 200
    # revoking asks first (a page with a second submit, no JavaScript needed); asking changes nothing
    page = s.post("/admin/terminals/revoke", {"assignment_id": terminal.assignment_id}, csrf=s.csrf())
    assert page.status == 200 and 'name="confirm" value="yes"' in page.text and "scanned" in page.text, \
        page.text[:3000]
    assert terminal_client.get(f"{PREFIX}/config", terminal=terminal).status == 200
    page = s.post("/admin/terminals/revoke", {"assignment_id": terminal.assignment_id, "confirm": "yes"},
                  csrf=page.csrf())
    assert page.status == 303 and page.location == "/admin/terminals?done=revoked", page.text[:2000]
    for _ in range(2):  # the cached secret is gone too: still refused
        reply = terminal_client.get(f"{PREFIX}/config", terminal=terminal)
        assert reply.status == 401, reply.raw
    # a viewer may neither make codes nor be asked to revoke
    viewer = sessions["viewer"]
    assert viewer.post("/admin/terminals/code", {"position_id": position.group(1)},
                       csrf=viewer.csrf()).status == 403
    assert viewer.post("/admin/terminals/revoke", {"assignment_id": terminal.assignment_id},
                       csrf=viewer.csrf()).status == 403


def test_tag_import_refuses_a_bad_line_and_imports_nothing(db, sessions):
    s = sessions["admin"]
    token = s.csrf("/admin/tags")
    before = api_rows(db, "admin_tags", s.session_token())
    uids = [secrets.token_hex(7).upper() for _ in range(3)]
    bad = f"UID,PIN\n{uids[0]},1234\n{uids[1]},1234,extra\n{uids[2]},5678\n"
    page = s.post("/admin/tags", {"form": "import", "csv": bad}, csrf=token)
    assert page.status in INVALID, page.text[:2000]
    assert 'id="import-csv-error"' in page.text and "line 3" in page.text, page.text[:4000]
    assert api_rows(db, "admin_tags", s.session_token()) == before
    good = "\n".join(f"{uid},{1000 + i}" for i, uid in enumerate(uids))
    page = s.post("/admin/tags", {"form": "import", "csv": good}, csrf=token)
    assert page.status == 303 and "imported=3" in page.location, page.text[:2000]
    assert "3 tags imported." in s.get(page.location).text
    page = s.post("/admin/tags", {"form": "import", "csv": f"{secrets.token_hex(7).upper()},4321"}, csrf=token)
    assert page.status == 303 and "imported=1" in page.location, page.text[:2000]
    text = s.get(page.location).text
    assert "1 tag imported." in text and "1 tags" not in text


# ----------------------------------------------------------------------------- customers, transactions, reports


def test_customer_page_block_and_unblock(db, sessions, sales):
    s = sessions["support"]
    page = s.get(f"/admin/customers/{sales['uid']}")
    assert page.status == 200 and "Beer" in page.text, page.text[:3000]
    page = s.post(f"/admin/customers/{sales['uid']}/block", {"blocked": "true", "reason": "lost"}, csrf=page.csrf())
    assert page.status == 303, page.text[:2000]
    assert scalar(db, "SELECT * FROM api.admin_customer(%s, %s)", (s.session_token(), sales["uid"]))["status"] \
        == "blocked"
    page = s.post(f"/admin/customers/{sales['uid']}/block", {"blocked": "false", "reason": "found"},
                  csrf=s.csrf())
    assert page.status == 303
    # a reason is required: the message sits next to the field
    page = s.post(f"/admin/customers/{sales['uid']}/block", {"form": "block", "blocked": "true", "reason": ""},
                  csrf=s.csrf())
    assert page.status in INVALID and 'id="block-reason-error"' in page.text


def test_transactions_filter_and_keyset_pagination(sessions, sales, monkeypatch):
    from python_gateway.admin import transactions

    monkeypatch.setattr(transactions, "PAGE_SIZE", 1)
    s = sessions["viewer"]
    page = s.get("/admin/transactions")
    first = re.findall(r'href="/admin/transactions/(\d+)"', page.text)
    older = re.search(r'href="(/admin/transactions\?[^"]*before=\d+[^"]*)" rel="next"', page.text)
    assert len(first) == 1 and older, page.text[:4000]
    page = s.get(html.unescape(older.group(1)))
    second = re.findall(r'href="/admin/transactions/(\d+)"', page.text)
    assert len(second) == 1 and int(second[0]) < int(first[0])
    assert 'rel="first"' in page.text
    # filters are query parameters with the filter keys
    page = s.get("/admin/transactions?" + urlencode({"type": "purchase", "uid": sales["uid"]}))
    assert re.findall(r'href="/admin/transactions/(\d+)"', page.text) == [str(sales["sale_id"])]
    page = s.get("/admin/transactions?" + urlencode({"amount_min": "twelve"}))
    assert page.status in INVALID and 'id="filter-amount_min-error"' in page.text


def test_reports_download_as_csv_and_print(sessions):
    s = sessions["finance"]
    for name in REPORTS:
        page = s.get(f"/admin/reports/{name}?format=csv")
        assert page.status == 200, (name, page.text[:2000])
        assert page.header("Content-Type").startswith("text/csv")
        assert page.header("Content-Disposition").startswith("attachment; filename=") and ".csv" in \
            page.header("Content-Disposition")
        assert page.text.splitlines()[0], name  # the header line: the report's columns
        html_page = s.get(f"/admin/reports/{name}")
        assert "?format=csv" in html_page.text
    assert s.get("/admin/reports/no-such-report").status == 404


def test_transaction_detail_is_labelled_for_an_operator(sessions, sales):
    s = sessions["viewer"]
    page = s.get(f"/admin/transactions/{sales['sale_id']}", headers={"Accept-Language": "en"})
    assert page.status == 200
    facts = page.text[page.text.index('<dl class="facts">'):page.text.index("</dl>")]
    labels = re.findall(r"<dt>([^<]+)</dt>", facts)
    # the facts an operator reads, with human labels, in this order
    wanted = ["Type", "State", "Amount", "Fee", "Tag", "Merchant", "Position", "Terminal", "Terminal number",
              "Created", "Committed"]
    assert [label for label in labels if label in wanted] == wanted, labels
    assert f'href="/admin/customers/{sales["uid"]}"' in facts and "bar till" in facts and "€9.00" in facts
    assert "purchase" in facts and "Committed" in facts
    # internal ids only in the small technical block
    technical = page.text[page.text.index('<details class="technical">'):]
    technical = technical[:technical.index("</details>")]
    for internal in ("other_account_id", "account_id", "event_id", "tag_id"):
        assert internal not in facts and internal in technical, internal
    # labelled tables: items, booking lines, state changes
    heads = re.findall(r"<thead><tr>(.*?)</tr></thead>", page.text, re.S)
    columns = [re.findall(r"<th[^>]*>([^<]*)</th>", head) for head in heads]
    assert ["#", "Product", "Quantity", "Unit price", "VAT", "Deposit", "Gross"] in columns, columns
    assert ["#", "Receives (debit)", "Pays (credit)", "Amount", "Booked"] in columns, columns
    # debit receives, credit pays: in a sale the merchant receives from the tag
    assert re.search(r"<td>Bar \(merchant\)</td>\s*<td>tag [0-9A-F]+</td>", page.text), "merchant receives"
    assert any(c[:4] == ["Time", "From", "To", "By"] for c in columns), columns
    assert ">19%<" in page.text and "€4.50" in page.text and "Bar (merchant)" in page.text
    assert re.search(r"<td>terminal \d+</td>", page.text), "the state change's author, as a terminal"
    german = s.get(f"/admin/transactions/{sales['sale_id']}", headers={"Accept-Language": "de"}).text
    assert ">19\xa0%<" in german and "4,50\xa0€" in german


def visible_text(markup: str) -> str:
    """What a reader sees of a page: no scripts, no tags, no attribute values."""
    markup = re.sub(r"<script\b.*?</script>", " ", markup, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


@pytest.mark.parametrize("language", ("en", "de"))
def test_no_python_values_leak_into_pages(language, sessions, sales):
    s = sessions["admin"]
    for path in pages(sales):
        text = visible_text(s.get(path, headers={"Accept-Language": language}).text)
        for leak in re.findall(r"\b(?:True|False|None)\b|\b\d+\.0\b(?![.,\d])", text):
            pytest.fail(f"{path} ({language}) shows {leak!r}: …{text[max(0, text.index(leak) - 80):][:200]}…")


def test_report_columns_have_labels_and_the_csv_the_same(sessions, sales):
    s = sessions["finance"]
    page = s.get("/admin/reports/sales-per-merchant")
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page.text, re.S).group(1)
    labels = [html.unescape(x) for x in re.findall(r"<th[^>]*>([^<]*)</th>", head)]
    assert labels == ["Merchant", "Purchases", "Gross (EUR)", "Chargebacks (EUR)", "Net (EUR)"], labels
    csv_page = s.get("/admin/reports/sales-per-merchant?format=csv")
    lines = csv_page.text.splitlines()
    assert lines[0] == ",".join(labels), lines[0]
    bar = next(line.split(",") for line in lines[1:] if line.startswith("Bar,"))
    assert bar[1].isdigit() and all(re.fullmatch(r"-?\d+\.\d\d", cell) for cell in bar[2:]), bar
    settlement = s.get("/admin/reports/settlement?format=csv").text.splitlines()[0]
    assert settlement == "Merchant,Gross sales (EUR),Chargebacks (EUR),Payable (EUR)", settlement
    products = s.get("/admin/reports/sales-per-product?format=csv").text.splitlines()
    assert products[0] == "Product,VAT rate,Quantity sold,Gross (EUR),Quantity returned", products[0]
    beer = next(line.split(",") for line in products[1:] if line.startswith("Beer,"))
    assert beer[1] == "19", beer  # a plain number, not 19.0
    hours = s.get("/admin/reports/sales-per-hour?format=csv").text.splitlines()
    assert hours[0] == "Hour,Purchases,Gross (EUR)", hours[0]
    for line in hours[1:]:  # ISO 8601 with the event zone's offset
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d,\d+,\d+\.\d\d$", line), line


# ----------------------------------------------------------------------------- dashboard


def read_events(port: int, cookie: str, wanted: int, timeout: float = 10.0) -> list[dict[str, str]]:
    """The first ``wanted`` server-sent events of /admin/live."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(f"GET /admin/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: festpay_admin={cookie}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        buffer = b""
        events: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while len(events) < wanted and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            *blocks, buffer = re.split(rb"\r\n\r\n|\n\n", buffer)
            for block in blocks:
                text = block.decode()
                if text.startswith("HTTP/1.1"):
                    assert " 200 " in text.splitlines()[0], text
                    continue
                event = {}
                for line in re.split(r"\r\n|\n", text):
                    key, _, value = line.partition(": ")
                    if key and not key.startswith(":"):
                        event[key] = value
                if event.get("event") == "summary":
                    events.append(event)
        return events
    finally:
        sock.close()


def test_dashboard_renders_values_and_streams_one_summary_to_every_viewer(site, sessions):
    page = sessions["viewer"].get("/admin/")
    assert 'id="revenue-today"' in page.text and 'id="chart"' in page.text
    assert "uPlot.iife.min.js" in page.text and "chart-time.js" in page.text
    assert 'data-time-zone="' in page.text  # the live clock and the chart axes use the event's zone
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(read_events, site.port, sessions["viewer"].session_token(), 3)
        b = pool.submit(read_events, site.port, sessions["finance"].session_token(), 3)
        events_a, events_b = a.result(), b.result()
    assert len(events_a) == 3 and len(events_b) == 3
    summary = json.loads(events_a[-1]["data"])
    assert {"revenue_today", "series", "queue_counts"} <= set(summary)
    # the same numbered answers reached both viewers: one query per interval, not one per viewer
    ids_a, ids_b = {e["id"] for e in events_a}, {e["id"] for e in events_b}
    assert ids_a & ids_b, (ids_a, ids_b)
    ids = sorted(int(i) for i in ids_a | ids_b)
    assert ids[-1] - ids[0] <= 6, ids


def test_static_files_and_vendored_chart_library(site):
    s = Session(site.port)
    for path in ("/admin/static/site.css", "/admin/static/dashboard.js", "/admin/static/chart-time.js",
                 "/admin/static/vendor/uplot/uPlot.iife.min.js", "/admin/static/vendor/uplot/uPlot.min.css",
                 "/admin/static/vendor/uplot/LICENSE"):
        page = s.get(path)
        assert page.status == 200, path
    assert "MIT" in s.get("/admin/static/vendor/uplot/LICENSE").text


# ----------------------------------------------------------------------------- password, users


def test_password_change_revokes_sessions(site, db):
    scalar(db, "SELECT * FROM api.create_admin_user(%s, 'viewer', %s)", ("http-changer", PASSWORD))
    a, b = Session(site.port), Session(site.port)
    assert a.login("http-changer").status == 303 and b.login("http-changer").status == 303
    page = a.post("/admin/password", {"form": "password", "password": PASSWORD, "new_password": "short",
                                      "new_password_repeat": "short"}, csrf=a.csrf())
    assert page.status in INVALID and 'id="password-new_password-error"' in page.text, page.text[:3000]
    page = a.post("/admin/password", {"form": "password", "password": PASSWORD, "new_password": "n" * 12,
                                      "new_password_repeat": "m" * 12}, csrf=a.csrf())
    assert page.status in INVALID and 'id="password-new_password_repeat-error"' in page.text
    new = "a brand new passphrase"
    page = a.post("/admin/password", {"password": PASSWORD, "new_password": new, "new_password_repeat": new},
                  csrf=a.csrf())
    assert page.status == 303 and page.location.startswith("/admin/login")
    assert b.get("/admin/").status == 303  # the other session is revoked too
    assert Session(site.port).login("http-changer", new).status == 303


def test_admin_creates_a_user_and_sees_the_audit_log(db, sessions, site):
    s = sessions["admin"]
    page = s.post("/admin/users", {"username": "http-created", "role": "support", "password": PASSWORD},
                  csrf=s.csrf("/admin/users"))
    assert page.status == 303, page.text[:2000]
    assert Session(site.port).login("http-created").status == 303
    audit = s.get("/admin/audit")
    assert audit.status == 200 and "http-created" in audit.text


# ----------------------------------------------------------------------------- command line


def test_first_admin_bootstrap_writes_the_password_file(db, first_admin_lines):
    lines, settings = first_admin_lines
    path = settings.data_dir / "admin-password"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    password = path.read_text().strip()
    assert lines[0] == ("admin", "http://127.0.0.1:8080/admin/")
    assert any(password in value for _, value in lines)
    assert scalar(db, "SELECT count(*) FROM ledger.admin_user WHERE username = 'admin'") == 1
    # a second run creates nothing and prints the URL only
    again = cli.first_admin(db.info.dsn, settings)
    assert again == [("admin", "http://127.0.0.1:8080/admin/")]
    assert path.read_text().strip() == password


def test_cli_create_user_reads_the_password_from_stdin(pg_cluster, site):
    env = {**os.environ, "DATABASE_URL": pg_cluster.url(DBNAME), "FESTPAY_PG_PORT": ""}
    command = [sys.executable, "-m", "python_gateway.cli", "admin", "create-user", "--username", "http-cli",
               "--role", "finance"]
    result = subprocess.run(command, input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=60,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert Session(site.port).login("http-cli").status == 303
    result = subprocess.run(command[:-1] + ["wizard"], input=PASSWORD + "\n", env=env, capture_output=True,
                            text=True, timeout=60, cwd=PROJECT_ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------- support and finance actions


def test_queue_item_decided_with_outcome_and_reason(db, sessions, sales, world, terminal_client):
    number = next(_numbers)
    items = [{"product_id": world["beer"], "quantity": 1, "unit_price": 450}]
    reply = terminal_client.post(f"{PREFIX}/reserve", {"terminal_tx_number": number, "uid": sales["uid"],
                                                       "tag_tx_number": 1, "amount": 450, "items": items},
                                 terminal=sales["bar"])
    assert reply.status == 201, reply.raw
    tx_id = reply.json["transaction_id"]
    reply = terminal_client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": number, "state": "TerminalConfirmUnknown", "uid": sales["uid"], "amount": 450,
         "tag_tx_number": 1, "time": "2025-07-01T12:05:00Z", "items": items}]}, terminal=sales["bar"])
    assert reply.status == 200, reply.raw
    s = sessions["support"]
    page = s.get("/admin/queue")
    assert "terminal-confirm-unknown" in page.text and f'href="/admin/transactions/{tx_id}"' in page.text
    form = f"resolve-terminal-confirm-unknown-{tx_id}-"
    page = s.post("/admin/queue/resolve", {"form": form, "transaction_id": tx_id, "outcome": "Aborted",
                                           "reason": ""}, csrf=page.csrf())
    assert page.status in INVALID and f'id="{form}-reason-error"' in page.text, page.messages()
    viewer = sessions["viewer"]
    assert viewer.post("/admin/queue/resolve", {"transaction_id": tx_id, "outcome": "Aborted", "reason": "x"},
                       csrf=viewer.csrf()).status == 403
    page = s.post("/admin/queue/resolve", {"transaction_id": tx_id, "outcome": "Aborted",
                                           "reason": "the tag was never written"}, csrf=s.csrf())
    assert page.status == 303 and page.location == "/admin/queue?done=resolved", page.messages()
    tx = scalar(db, "SELECT * FROM api.admin_transaction(%s, %s)", (s.session_token(), tx_id))
    assert tx["transaction"]["state"] == "Aborted"
    page = sessions["admin"].get("/admin/audit")
    assert "queue.resolve" in page.text and "the tag was never written" in page.text
    # deciding it again (the item is gone from the queue): a clear message above the queue page, with the state now
    for extra in ({}, {"form": form}):  # without and with the name of the form, which is no longer on the page
        page = s.post("/admin/queue/resolve", {**extra, "transaction_id": tx_id, "outcome": "Committed",
                                               "reason": "again"}, csrf=s.csrf())
        assert page.status == 409, (page.status, page.messages())
        assert any(f"Transaction #{tx_id} is already decided: now Aborted." in m for m in page.messages()), \
            page.messages()
        assert "Resolution queue" in page.text and f'id="{form}-outcome"' not in page.text
    assert scalar(db, "SELECT * FROM api.admin_transaction(%s, %s)", (s.session_token(), tx_id))["transaction"][
        "state"] == "Aborted"


def test_chargeback_never_more_than_is_left(db, sessions, sales):
    s = sessions["support"]
    path = f"/admin/customers/{sales['uid']}"
    page = s.get(path)
    assert f'<option value="{sales["sale_id"]}">' in page.text, page.text[:3000]
    page = s.post(path + "/chargeback", {"form": "chargeback", "transaction_id": sales["sale_id"],
                                         "amount": "1.00", "reason": "warm beer"}, csrf=page.csrf())
    assert page.status == 303, page.messages()
    page = s.post(path + "/chargeback", {"form": "chargeback", "transaction_id": sales["sale_id"],
                                         "amount": "100.00", "reason": "too much"}, csrf=s.csrf())
    assert 400 <= page.status < 500 and page.messages(), page.status
    rows = [e for e in scalar(db, "SELECT * FROM api.admin_customer(%s, %s)",
                              (s.session_token(), sales["uid"]))["statement"] if e["type"] == "chargeback"]
    assert [e["amount"] for e in rows] == [100]


def test_move_to_a_blocked_tag_is_refused_on_the_form(db, sessions, sales, terminal_client):
    s = sessions["support"]
    uid, blocked = secrets.token_hex(7).upper(), secrets.token_hex(7).upper()
    for tag in (uid, blocked):
        reply = terminal_client.post(f"{PREFIX}/topups", {"terminal_tx_number": next(_numbers), "uid": tag,
                                                          "amount": 700, "payment": "cash"}, terminal=sales["till"])
        assert reply.status == 201, reply.raw
    page = s.post(f"/admin/customers/{blocked}/block", {"blocked": "true", "reason": "stolen"}, csrf=s.csrf())
    assert page.status == 303, page.messages()
    page = s.post(f"/admin/customers/{uid}/move", {"form": "move", "new_uid": blocked, "reason": "lost it"},
                  csrf=s.csrf())
    # not an error page: the tag's page again, the message next to the new tag's field, the typed values kept
    assert 400 <= page.status < 500 and 'class="error-page"' not in page.text, (page.status, page.text[:2000])
    assert 'id="move-new_uid-error"' in page.text and re.search(r'name="new_uid"[^>]*aria-invalid="true"',
                                                                 page.text), page.text[:4000]
    assert f'value="{blocked}"' in page.text and 'value="lost it"' in page.text
    token = s.session_token()
    assert scalar(db, "SELECT * FROM api.admin_customer(%s, %s)", (token, uid))["available"] == 700
    assert scalar(db, "SELECT * FROM api.admin_customer(%s, %s)", (token, uid))["status"] == "active"


def test_move_the_balance_to_a_new_tag(db, sessions, sales, terminal_client):
    uid = secrets.token_hex(7).upper()
    reply = terminal_client.post(f"{PREFIX}/topups", {"terminal_tx_number": next(_numbers), "uid": uid,
                                                      "amount": 1500, "payment": "cash"}, terminal=sales["till"])
    assert reply.status == 201, reply.raw
    s = sessions["support"]
    new_uid = secrets.token_hex(7).upper()
    page = s.post(f"/admin/customers/{uid}/move", {"form": "move", "new_uid": new_uid, "reason": "lost"},
                  csrf=s.csrf())
    assert page.status == 303 and page.location.startswith(f"/admin/customers/{new_uid}"), page.messages()
    token = s.session_token()
    assert scalar(db, "SELECT * FROM api.admin_customer(%s, %s)", (token, uid))["status"] == "blocked"
    assert scalar(db, "SELECT * FROM api.admin_customer(%s, %s)", (token, new_uid))["available"] == 1500
    assert s.get(page.location).status == 200


def test_fiscal_close_and_dsfinvk_export_job(db, sessions, sales):
    import io
    import zipfile

    s = sessions["finance"]
    page = s.get("/admin/fiscal")
    assert page.status == 200
    bar = sales["bar"].assignment_id
    assert f'name="assignment_id" value="{bar}"' in page.text, page.text[:4000]
    closings = scalar(db, "SELECT count(*) FROM ledger.cashpoint_closing")
    # closing asks first (a second submit with confirm=yes, no JavaScript needed); asking closes nothing
    page = s.post("/admin/fiscal/close", {"assignment_id": bar}, csrf=page.csrf())
    assert page.status == 200 and 'name="confirm" value="yes"' in page.text and "bar till" in page.text, \
        page.text[:3000]
    assert scalar(db, "SELECT count(*) FROM ledger.cashpoint_closing") == closings
    page = s.post("/admin/fiscal/close", {"assignment_id": bar, "confirm": "yes"}, csrf=page.csrf())
    assert page.status == 303 and page.location == "/admin/fiscal?done=closed", page.messages()
    assert scalar(db, "SELECT count(*) FROM ledger.cashpoint_closing") == closings + 1
    viewer = sessions["viewer"]
    assert viewer.post("/admin/fiscal/close", {"assignment_id": bar}, csrf=viewer.csrf()).status == 403
    # DSFinV-K dates: a date that is none, or an end before the start, is refused next to its field
    page = s.post("/admin/fiscal/export", {"form": "export", "from": "2025-13-01", "to": ""}, csrf=s.csrf())
    assert page.status in INVALID and 'id="export-from-error"' in page.text, page.messages()
    page = s.post("/admin/fiscal/export", {"form": "export", "from": "2025-07-02", "to": "2025-07-01"},
                  csrf=s.csrf())
    assert page.status in INVALID and 'id="export-to-error"' in page.text, page.messages()
    assert 'value="2025-07-02"' in page.text and 'value="2025-07-01"' in page.text
    assert viewer.post("/admin/fiscal/export", {}, csrf=viewer.csrf()).status == 403
    page = s.post("/admin/fiscal/export", {"from": "", "to": ""}, csrf=s.csrf())
    assert page.status == 303 and page.location.startswith("/admin/fiscal/export/"), page.messages()
    job = page.location
    assert sessions["admin"].get(job).status == 404  # another admin's job is not there for them
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = s.get(job)
        assert page.status == 200
        if 'id="export-download"' in page.text or "export failed" in page.text:
            break
        assert '<meta http-equiv="refresh"' in page.text
        time.sleep(0.3)
    assert 'id="export-download"' in page.text, page.messages()
    download = s.get(job + "/download")
    assert download.status == 200 and download.header("Content-Type") == "application/zip"
    disposition = download.header("Content-Disposition")
    assert disposition.startswith("attachment;") and disposition.endswith('.zip"'), disposition
    names = zipfile.ZipFile(io.BytesIO(download.body)).namelist()
    assert "index.xml" in names and "lines.csv" in names, names


def test_receipt_of_a_committed_sale(sessions, sales):
    s = sessions["viewer"]
    page = s.get(f"/admin/transactions/{sales['sale_id']}")
    link = f'href="/admin/transactions/{sales["sale_id"]}/receipt"'
    assert link in page.text, page.text[:3000]
    receipt = s.get(f"/admin/transactions/{sales['sale_id']}/receipt")
    assert receipt.status == 200 and "Beer" in receipt.text and "SUMME" in receipt.text
    assert "frame-ancestors 'none'" in receipt.header("Content-Security-Policy")
    assert s.get("/admin/transactions/999999999/receipt").status == 404


def test_money_and_times_follow_the_browser_language(sessions, sales):
    s = sessions["viewer"]
    path = f"/admin/customers/{sales['uid']}"
    german = s.get(path, headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}).text
    english = s.get(path, headers={"Accept-Language": "en-GB,en;q=0.9"}).text
    assert '<html lang="de">' in german and "4,50\xa0€" in german, german[:3000]
    assert '<html lang="en">' in english and "€4.50" in english


def test_serve_apps_option():
    assert cli.parse_apps("terminal,admin") == ("terminal", "admin")
    assert cli.parse_apps(" admin ") == ("admin",)
    assert cli.parse_apps("terminal,admin,portal") == ("terminal", "admin", "portal")
    for bad in ("", "admin,shop", ","):
        with pytest.raises(cli.CliError):
            cli.parse_apps(bad)


def test_a_revoked_terminal_leaves_the_secret_cache():
    """auth_middleware evicts the assignment when its call answers terminal-revoked (FP072), and only then."""
    import asyncio
    import base64

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from python_gateway import signing
    from python_gateway.gateway.auth import SECRETS_KEY, SecretCache, auth_middleware

    class Refused(psycopg.Error):
        def __init__(self, sqlstate: str):
            self._state = sqlstate
            super().__init__("refused")

        @property
        def sqlstate(self) -> str:  # type: ignore[override]
            return self._state

    secret = base64.b64encode(b"k" * 32).decode()
    app = web.Application()
    app[SECRETS_KEY] = SecretCache()
    app[SECRETS_KEY]._secrets.update({7: secret, 8: secret})

    async def call(assignment: int, sqlstate: str) -> None:
        headers = signing.signed_headers(assignment, secret, "GET", "/terminal/v1/config", b"")
        request = make_mocked_request("GET", "/terminal/v1/config", headers=headers, app=app)

        async def handler(request: web.Request) -> web.Response:
            raise Refused(sqlstate)

        with pytest.raises(Refused):
            await auth_middleware(request, handler)

    asyncio.run(call(7, "FP072"))
    asyncio.run(call(8, "FP020"))
    assert 7 not in app[SECRETS_KEY] and 8 in app[SECRETS_KEY]
