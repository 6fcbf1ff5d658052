"""The customer portal over real HTTP against a real gateway (terminal API, admin site and portal; the portal logged
in as festpay_web), in a database of its own (``festpay_portal_http``, migrated here).

- sign-in with UID and PIN: ok, or refused alike (unknown tag, wrong PIN); the session cookie's attributes;
- every POST needs the site's Origin and the CSRF token (403 and nothing changed otherwise);
- every page renders in German and in English (Accept-Language, and the language switch's cookie), texts differ;
- balance, history with items and receipts; another tag's receipt is a 404 like a missing one;
- blocking the own wristband blocks the tag (checked through the api); the privacy JSON holds only the own data;
- the per-address rate limit of sign-in attempts (429); sign-out revokes the session;
- the German catalogue is complete and matches the texts extracted from the code.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from python_gateway.portal.auth import AttemptLimiter
from tests.conftest import own_database
from tests.gateway_server import PREFIX, Client, RunningGateway, register_terminal, scalar, start_admin_gateway
from tests.test_admin_http import Session, portal_session

DBNAME = "festpay_portal_http"
APPS = ("terminal", "admin", "portal")
PINS = {"A": "1234", "B": "5678", "C": "2468"}
DE = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
PAGES = ("/portal/", "/portal/history", "/portal/block", "/portal/privacy", "/portal/topup", "/portal/payout")


@pytest.fixture(scope="module")
def db(pg_cluster) -> Iterator[psycopg.Connection]:
    with own_database(pg_cluster, DBNAME) as conn:
        yield conn


@pytest.fixture(scope="module")
def site(pg_cluster, db) -> Iterator[RunningGateway]:
    with start_admin_gateway(pg_cluster, dbname=DBNAME, apps=APPS, portal_login_attempts=1000) as gw:
        yield gw


@pytest.fixture(scope="module")
def world(db, site) -> dict[str, Any]:
    """An event with tags A, B, C (PINs), each topped up with 20,00; A and B each bought two beers."""
    event_id = scalar(db, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000)",
                      (f"Portal HTTP {secrets.token_hex(3)}",))
    merchant = scalar(db, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    scalar(db, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    scalar(db, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    beer = scalar(db, "SELECT api.create_product(%s, 'Beer', 450, 19)", (event_id,))
    client = Client(site.port)
    till = register_terminal(db, client, event_id, "Top-up", "top-up till")
    bar = register_terminal(db, client, event_id, "Bar", "bar till")
    tags: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(PINS, start=1):
        uid = secrets.token_hex(7).upper()
        scalar(db, "SELECT api.create_tag(%s, %s, %s)", (event_id, uid, PINS[name]))
        reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": n, "uid": uid, "amount": 2000,
                                                 "payment": "cash"}, terminal=till)
        assert reply.status == 201, reply.raw
        tags[name] = {"uid": uid, "pin": PINS[name], "topup_id": reply.json["transaction_id"]}
    for n, name in enumerate(("A", "B"), start=1):
        items = [{"product_id": beer, "quantity": 2, "unit_price": 450}]
        reply = client.post(f"{PREFIX}/reserve", {"terminal_tx_number": n, "uid": tags[name]["uid"],
                                                  "tag_tx_number": 0, "amount": 900, "items": items}, terminal=bar)
        assert reply.status == 201, reply.raw
        tags[name]["sale_id"] = reply.json["transaction_id"]
        reply = client.post(f"{PREFIX}/transactions", {"transactions": [
            {"terminal_tx_number": n, "state": "Committed", "uid": tags[name]["uid"], "amount": 900,
             "tag_tx_number": 0, "time": "2025-07-01T12:00:00Z", "items": items}]}, terminal=bar)
        assert reply.status == 200 and reply.json["results"][0]["outcome"] == "booked", reply.raw
    return {"event_id": event_id, "tags": tags}


def signed_in(site: RunningGateway, world: dict[str, Any], name: str) -> Session:
    tag = world["tags"][name]
    return portal_session(site.port, tag["uid"], tag["pin"])


def tag_status(db, world, name: str) -> str:
    return scalar(db, "SELECT status::text FROM ledger.tag WHERE event_id = %s AND uid = %s",
                  (world["event_id"], world["tags"][name]["uid"]))


# ----------------------------------------------------------------------------- sign-in, cookies, CSRF


def test_sign_in_ok_and_refused_alike(site, world):
    s = Session(site.port)
    page = s.get("/portal/login", headers=EN)
    assert page.status == 200 and 'name="uid"' in page.text and 'name="pin"' in page.text
    a = world["tags"]["A"]
    wrong = s.portal_login(a["uid"], "0000", headers=EN)
    unknown = s.portal_login("ABCDEF0123456789", a["pin"], headers=EN)
    assert wrong.status == unknown.status == 401
    assert wrong.messages() == unknown.messages() and len(wrong.messages()) == 1, (wrong.messages(), unknown.messages())
    assert "festpay_portal" not in s.cookies
    page = s.portal_login(a["uid"].lower(), a["pin"])
    assert page.status == 303 and page.location == "/portal/"
    assert "festpay_portal" in s.cookies and "festpay_login_csrf" not in s.cookies
    assert s.get("/portal/").status == 200


def test_session_cookie_attributes(site, world):
    s = signed_in(site, world, "A")
    line = next(x for x in s.set_cookie_lines if x.startswith("festpay_portal="))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in line.split(";")[1:]}
    assert "httponly" in attributes and attributes["samesite"] == "SameSite=Strict", line
    assert attributes["path"] == "Path=/portal/", line
    assert "expires" not in attributes and "max-age" not in attributes, line
    page = s.get("/portal/")
    assert page.header("Cache-Control") == "no-store"
    assert "frame-ancestors 'none'" in page.header("Content-Security-Policy")


def test_unauthenticated_goes_to_sign_in(site, world):
    page = Session(site.port).get("/portal/history")
    assert page.status == 303 and page.location == "/portal/login?next=/portal/history"


def test_posts_need_origin_and_csrf(site, world, db):
    s = signed_in(site, world, "A")
    csrf = s.get("/portal/block").csrf()
    for kwargs in ({"csrf": None}, {"csrf": "wrong-token"}, {"csrf": csrf, "origin": None},
                   {"csrf": csrf, "origin": "http://evil.example"}):
        assert s.post("/portal/block", {}, **kwargs).status == 403, kwargs
        assert s.post("/portal/logout", {}, **kwargs).status == 403, kwargs
    assert tag_status(db, world, "A") == "active"
    assert s.get("/portal/").status == 200  # still signed in: the refused sign-out changed nothing
    fresh = Session(site.port)
    token = fresh.get("/portal/login").csrf()
    a = world["tags"]["A"]
    assert fresh.post("/portal/login", {"uid": a["uid"], "pin": a["pin"]}, csrf="forged").status == 403
    assert fresh.post("/portal/login", {"uid": a["uid"], "pin": a["pin"]}, csrf=token, origin=None).status == 403
    assert "festpay_portal" not in fresh.cookies


# ----------------------------------------------------------------------------- languages


def test_pages_render_in_german_and_english(site, world):
    s = signed_in(site, world, "A")
    for path in PAGES:
        german, english = s.get(path, headers=DE), s.get(path, headers=EN)
        assert german.status == english.status == 200, (path, german.status, english.status)
        assert '<html lang="de">' in german.text and '<html lang="en">' in english.text, path
        assert german.text != english.text, path
    assert "Verfügbar" in s.get("/portal/", headers=DE).text and "Available" in s.get("/portal/", headers=EN).text
    assert "Anmelden" in Session(site.port).get("/portal/login", headers=DE).text
    assert "11,00\xa0€" in s.get("/portal/", headers=DE).text and "€11.00" in s.get("/portal/", headers=EN).text


def test_language_switch(site, world):
    s = signed_in(site, world, "A")
    page = s.get("/portal/language/de?next=/portal/history")
    assert page.status == 303 and page.location == "/portal/history" and s.cookies.get("festpay_lang") == "de"
    assert '<html lang="de">' in s.get("/portal/history", headers=EN).text
    assert s.get("/portal/language/en?next=https://evil.example/").location == "/portal/"
    assert '<html lang="en">' in s.get("/portal/", headers=DE).text
    assert s.get("/portal/language/fr").status == 404


# ----------------------------------------------------------------------------- money pages


def test_balance_history_and_receipt(site, world):
    a = world["tags"]["A"]
    s = signed_in(site, world, "A")
    page = s.get("/portal/", headers=EN)
    assert re.search(r'data-money="available">€11\.00<', page.text), page.text
    assert 'data-money="held">€0.00<' in page.text and 'data-money="pending">€0.00<' in page.text
    history = s.get("/portal/history", headers=EN).text
    assert f'id="tx-{a["sale_id"]}"' in history and f'id="tx-{a["topup_id"]}"' in history
    assert "2 × Beer" in history and f'href="/portal/receipts/{a["sale_id"]}"' in history
    assert f'id="tx-{world["tags"]["B"]["sale_id"]}"' not in history
    receipt = s.get(f"/portal/receipts/{a['sale_id']}")
    assert receipt.status == 200 and "Beer" in receipt.text


def test_another_tags_receipt_is_404(site, world):
    s = signed_in(site, world, "B")
    other = s.get(f"/portal/receipts/{world['tags']['A']['sale_id']}", headers=EN)
    missing = s.get("/portal/receipts/999999999", headers=EN)
    assert other.status == missing.status == 404
    same = other.text.replace(f"/receipts/{world['tags']['A']['sale_id']}", "/receipts/999999999")
    assert same == missing.text and world["tags"]["A"]["uid"] not in other.text  # only the language links' next
    assert s.get("/portal/receipts/abc").status == 404
    assert s.get(f"/portal/receipts/{world['tags']['B']['sale_id']}").status == 200


def test_topup_without_provider_says_coming(site, world):
    s = signed_in(site, world, "A")
    for path in ("/portal/topup",):
        page = s.get(path, headers=EN)
        assert page.status == 200 and "coming soon" in page.text and "<form" not in page.text.split("<main")[1]


# ----------------------------------------------------------------------------- privacy, block, sign-out


def test_privacy_page_and_json_hold_only_my_data(site, world):
    a, b = world["tags"]["A"], world["tags"]["B"]
    s = signed_in(site, world, "A")
    assert "ten years" in s.get("/portal/privacy", headers=EN).text
    page = s.get("/portal/privacy?format=json")
    assert page.status == 200 and page.header("Content-Type").startswith("application/json")
    assert page.header("Content-Disposition") == f'attachment; filename="festpay-{a["uid"]}.json"'
    data = json.loads(page.text)
    assert data["tag"]["uid"] == a["uid"] and data["money"]["available"] == 1100
    assert {t["transaction_id"] for t in data["transactions"]} == {a["topup_id"], a["sale_id"]}
    assert b["uid"] not in page.text and all(t["transaction_id"] != b["sale_id"] for t in data["transactions"])
    assert s.cookies["festpay_portal"] not in page.text and "hash" not in page.text and "$2" not in page.text
    assert data["sessions"] and all(set(x) == {"created_at", "last_seen_at", "revoked_at", "client"}
                                    for x in data["sessions"])


def test_block_my_wristband(site, world, db):
    s = signed_in(site, world, "C")
    page = s.get("/portal/block", headers=EN)
    assert page.status == 200 and "Block my wristband now" in page.text
    before = scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'portal.block'")
    page = s.post("/portal/block", {}, csrf=page.csrf())
    assert page.status == 303 and page.location == "/portal/?done=blocked"
    token = s.cookies["festpay_portal"]
    assert scalar(db, "SELECT status FROM api.portal_whoami(%s)", (token,)) == "blocked"
    assert tag_status(db, world, "C") == "blocked" and tag_status(db, world, "A") == "active"
    assert scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'portal.block'") == before + 1
    balance = s.get("/portal/?done=blocked", headers=EN)
    assert balance.status == 200 and "blocked" in balance.text and 'data-money="available">€20.00<' in balance.text
    assert "Block my wristband now" not in s.get("/portal/block", headers=EN).text


def test_logout_revokes(site, world, db):
    s = signed_in(site, world, "B")
    token = s.cookies["festpay_portal"]
    page = s.post("/portal/logout", {}, csrf=s.get("/portal/").csrf())
    assert page.status == 303 and page.location == "/portal/login?done=signed-out"
    assert "festpay_portal" not in s.cookies
    with pytest.raises(psycopg.Error):
        db.execute("SELECT * FROM api.portal_whoami(%s)", (token,))
    s.cookies["festpay_portal"] = token  # the old cookie, sent again
    page = s.get("/portal/")
    assert page.status == 303 and page.location.startswith("/portal/login")


# ----------------------------------------------------------------------------- rate limit


def test_sign_in_rate_limit_per_address(pg_cluster, world):
    gw = start_admin_gateway(pg_cluster, dbname=DBNAME, apps=APPS, portal_login_attempts=3,
                             portal_login_window_s=300)
    try:
        s = Session(gw.port)
        a = world["tags"]["A"]
        for _ in range(3):
            assert s.portal_login(a["uid"], "0000").status == 401
        page = s.portal_login(a["uid"], a["pin"], headers=EN)
        assert page.status == 429 and "Too many sign-in attempts" in page.text
        assert 0 < int(page.header("Retry-After")) <= 300
        assert "festpay_portal" not in s.cookies
        assert "Zu viele Anmeldeversuche" in Session(gw.port).portal_login(a["uid"], a["pin"], headers=DE).text
    finally:
        gw.stop()


def test_attempt_limiter_window_slides():
    now = [0.0]
    limiter = AttemptLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.hit("x") is None and limiter.hit("x") is None
    assert limiter.hit("x") == 10.0 and limiter.hit("y") is None
    now[0] = 10.0
    assert limiter.hit("x") is None


# ----------------------------------------------------------------------------- catalogues


def test_german_catalogue_is_complete_and_current():
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parent.parent
    method_map = [("python_gateway/portal/**.py", "python"), ("templates/portal/**.html", "jinja2")]
    options = {"templates/portal/**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}}
    extracted = {m[2] for m in extract_from_dir(str(root), method_map, options) if isinstance(m[2], str)}
    with (root / "python_gateway/portal/locale/de/LC_MESSAGES/messages.po").open("rb") as f:
        catalog = read_po(f)
    ids = {m.id for m in catalog if m.id}
    assert extracted == ids, (extracted - ids, ids - extracted)
    assert not [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
