"""The customer portal over real HTTP against a real gateway (terminal API, admin site and portal; the portal logged
in as festpay_web), in a database of its own (``festpay_portal_http``, migrated here).

- sign-in with UID and PIN: ok, or refused alike (unknown tag, wrong PIN); the session cookie's attributes;
- every POST needs the site's Origin and the CSRF token (403 and nothing changed otherwise);
- every page renders in German and in English (Accept-Language, and the language switch's cookie), texts differ;
- balance, history with items and receipts (with the way back to the history, in the visitor's language); another
  tag's receipt is a 404 like a missing one;
- blocking the own wristband blocks the tag (checked through the api); the privacy JSON holds only the own data; the
  privacy page names the payout data, how long it is kept, and whether the wristband is linked to a name;
- the online top-up form (a gateway with a payment provider that is never reached) states the limits as money, and
  says every refusal next to the field in the visitor's language: a missing or garbled amount, one out of bounds,
  above the highest balance, a blocked wristband, a payout run under way;
- the payout page: a donation that leaves too little for the fee, a donation capped at the balance, the deadline
  passed; a run that donates everything ends with thanks, and the wristband reads as paid out, not as blocked;
- the per-address rate limit of failed sign-in attempts (429, successful ones do not count, "1 minute" in the
  singular); sign-out revokes the session;
- the German catalogue is complete (plural forms too) and matches the texts extracted from the code.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from python_gateway.portal.auth import AttemptLimiter
from python_gateway.provider.http_client import HttpProvider
from tests.conftest import own_database
from tests.gateway_server import PREFIX, Client, RunningGateway, register_terminal, scalar, start_admin_gateway
from tests.test_admin_http import PASSWORD, Page, Session, portal_session

DBNAME = "festpay_portal_http"
APPS = ("terminal", "admin", "portal")
#: The tags: A, B, C as visitors; M near the highest balance; X blocked by support; V for the payout page; P for the
#: privacy page; R donates everything in a payout run.
PINS = {"A": "1234", "B": "5678", "C": "2468", "M": "1357", "X": "9753", "V": "8642", "P": "3141", "R": "2718"}
DE = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
INVALID = (400, 422)
FINANCE = "portal-finance"
IBAN = "DE89370400440532013000"
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
    """An event (top-ups 5,00 to 250,00, online fee 0,50, highest balance 500,00, payout fee 1,50, the festival's
    account set) with the tags of PINS, each topped up with 20,00; A and B each bought two beers; M has 490,00; X is
    blocked; R asked to donate everything (the oldest bank data); a finance user."""
    event_id = scalar(db, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_payout_fee => 150)",
                      (f"Portal HTTP {secrets.token_hex(3)}",))
    db.execute("UPDATE ledger.event SET topup_fee_online = 50, payout_debtor_name = 'Festival GmbH', "
               "payout_debtor_iban = 'DE02120300000000202051', payout_debtor_bic = 'BYLADEM1001' WHERE id = %s",
               (event_id,))
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
    for n, amount in ((11, 25000), (12, 22000)):
        reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": n, "uid": tags["M"]["uid"], "amount": amount,
                                                 "payment": "cash"}, terminal=till)
        assert reply.status == 201, reply.raw
    db.execute("SELECT api.block_tag(%s, %s)", (event_id, tags["X"]["uid"]))
    token = scalar(db, "SELECT token FROM api.portal_sign_in(%s, %s)", (tags["R"]["uid"], tags["R"]["pin"]))
    db.execute("SELECT api.portal_payout_set(%s, NULL, NULL, 'rosa@example.org', 'all', NULL)", (token,))
    scalar(db, "SELECT * FROM api.create_admin_user(%s, 'finance', %s)", (FINANCE, PASSWORD))
    return {"event_id": event_id, "tags": tags}


@pytest.fixture(scope="module")
def online(pg_cluster, db, world) -> Iterator[RunningGateway]:
    """A second gateway on the same database with a payment provider (never reached: every top-up here is refused
    before the provider is asked)."""
    provider = HttpProvider("http://127.0.0.1:9", "unused-secret", timeout=1)
    with start_admin_gateway(pg_cluster, dbname=DBNAME, apps=APPS, portal_login_attempts=1000,
                             provider=provider) as gw:
        yield gw


def signed_in(site: RunningGateway, world: dict[str, Any], name: str) -> Session:
    tag = world["tags"][name]
    return portal_session(site.port, tag["uid"], tag["pin"])


def tag_status(db, world, name: str) -> str:
    return scalar(db, "SELECT status::text FROM ledger.tag WHERE event_id = %s AND uid = %s",
                  (world["event_id"], world["tags"][name]["uid"]))


def visible(page: Page) -> str:
    """The page's main text without tags, entities resolved and whitespace collapsed."""
    main = page.text.split("<main", 1)[-1].split("</main>", 1)[0]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


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
    receipt = s.get(f"/portal/receipts/{a['sale_id']}", headers=EN)
    assert receipt.status == 200 and "Beer" in receipt.text
    back = f'href="/portal/history#tx-{a["sale_id"]}" id="back-to-history">← Back to your history</a>'
    assert back in receipt.text and '<nav class="back no-print" lang="en">' in receipt.text
    assert receipt.text.index(back) < receipt.text.index("Beer")  # above the receipt
    german = s.get(f"/portal/receipts/{a['sale_id']}", headers=DE).text
    assert "← Zurück zum Verlauf</a>" in german and '<nav class="back no-print" lang="de">' in german


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


# ----------------------------------------------------------------------------- online top-up: limits and refusals


def checkouts(db, world, name: str) -> int:
    return scalar(db, "SELECT count(*) FROM ledger.external_checkout c JOIN ledger.transaction t "
                      "ON t.id = c.transaction_id JOIN ledger.tag g ON g.id = t.tag_id WHERE g.uid = %s",
                  (world["tags"][name]["uid"],))


def top_up(s: Session, amount: str, headers: dict[str, str]) -> Page:
    return s.post("/portal/topup", {"form": "topup", "amount": amount}, csrf=s.csrf("/portal/topup"),
                  headers=headers)


def amount_error(page: Page) -> str:
    """The message next to the amount field (the field marked invalid and pointing at it), spaces as typed."""
    assert re.search(r'name="amount"[^>]*aria-invalid="true" aria-describedby="amount-error"', page.text), \
        page.text[:3000]
    match = re.search(r'<span class="field-error" id="amount-error">([^<]*)</span>', page.text)
    assert match, page.text[:3000]
    return " ".join(html.unescape(match.group(1)).split())


def test_topup_form_states_the_limits(online, world):
    s = portal_session(online.port, world["tags"]["A"]["uid"], world["tags"]["A"]["pin"])
    english, german = visible(s.get("/portal/topup", headers=EN)), visible(s.get("/portal/topup", headers=DE))
    assert "A top-up is between €5.00 and €250.00." in english, english
    assert "A fee of €0.50 is taken from each online top-up." in english
    assert "Eine Aufladung liegt zwischen 5,00 € und 250,00 €." in german, german
    assert "Von jeder Online-Aufladung wird eine Gebühr von 0,50 € abgezogen." in german
    assert "at most" not in english  # A's 11,00 is far from the highest balance
    m = portal_session(online.port, world["tags"]["M"]["uid"], world["tags"]["M"]["pin"])
    assert "You can top up at most €10.50 now: the highest balance allowed is €500.00." in visible(
        m.get("/portal/topup", headers=EN))
    assert "Du kannst jetzt höchstens 10,50 € aufladen" in visible(m.get("/portal/topup", headers=DE))


@pytest.mark.parametrize(("amount", "english", "german"), [
    ("", "Please enter the amount to top up.", "Bitte gib den Betrag ein, den du aufladen möchtest."),
    ("abc", "Please enter an amount like 12.50.", "Bitte gib einen Betrag wie 12,50 ein."),
    ("5,555", "Please enter an amount like 12.50.", "Bitte gib einen Betrag wie 12,50 ein."),
    ("0", "Please enter an amount between €5.00 and €250.00.",
     "Bitte gib einen Betrag zwischen 5,00 € und 250,00 € ein."),
    ("-5", "Please enter an amount between €5.00 and €250.00.",
     "Bitte gib einen Betrag zwischen 5,00 € und 250,00 € ein."),
    ("4,99", "Please enter an amount between €5.00 and €250.00.",
     "Bitte gib einen Betrag zwischen 5,00 € und 250,00 € ein."),
    ("1,5", "Please enter an amount between €5.00 and €250.00.",
     "Bitte gib einen Betrag zwischen 5,00 € und 250,00 € ein."),
    ("300", "Please enter an amount between €5.00 and €250.00.",
     "Bitte gib einen Betrag zwischen 5,00 € und 250,00 € ein."),
])
def test_a_refused_top_up_is_said_next_to_the_field(db, online, world, amount, english, german):
    s = portal_session(online.port, world["tags"]["A"]["uid"], world["tags"]["A"]["pin"])
    for headers, text in ((EN, english), (DE, german)):
        page = top_up(s, amount, headers)
        assert page.status in INVALID, (page.status, page.messages())
        assert amount_error(page) == text
        assert f'value="{html.escape(amount)}"' in page.text  # the typed amount comes back
    assert checkouts(db, world, "A") == 0


def test_top_up_above_the_highest_balance_or_of_a_blocked_wristband(db, online, world):
    m = portal_session(online.port, world["tags"]["M"]["uid"], world["tags"]["M"]["pin"])
    page = top_up(m, "20", EN)
    assert page.status == 422 and amount_error(page) == (
        "With this amount your balance would be above the highest balance allowed, €500.00: you can top up at most "
        "€10.50 now."), page.messages()
    assert amount_error(top_up(m, "20", DE)) == (
        "Mit diesem Betrag läge dein Guthaben über dem erlaubten Höchstguthaben von 500,00 €: Du kannst jetzt "
        "höchstens 10,50 € aufladen.")
    x = portal_session(online.port, world["tags"]["X"]["uid"], world["tags"]["X"]["pin"])
    page = top_up(x, "20", EN)
    assert page.status == 403 and amount_error(page) == "This wristband is blocked, so it cannot be topped up."
    assert amount_error(top_up(x, "20", DE)) == "Dieses Armband ist gesperrt und kann deshalb nicht aufgeladen werden."
    assert checkouts(db, world, "M") == checkouts(db, world, "X") == 0


# ----------------------------------------------------------------------------- payout page


def save_bank(s: Session, headers: dict[str, str] = EN, **fields: str) -> Page:
    form = {"form": "bank", "iban": IBAN, "holder": "Vera Vogel", "email": "vera@example.org", "donate": "none",
            "donation": "", **fields}
    return s.post("/portal/payout", form, csrf=s.csrf("/portal/payout"), headers=headers)


def test_a_donation_that_leaves_too_little_and_one_above_the_balance(site, world):
    s = signed_in(site, world, "V")  # 20,00; the payout fee is 1,50
    page = save_bank(s, donate="part", donation="50.00")
    assert page.status == 303, page.messages()
    english, german = visible(s.get("/portal/payout", headers=EN)), visible(s.get("/portal/payout", headers=DE))
    assert "You donate €20.00: at most your balance." in english, english
    assert "Du spendest 20,00 €: höchstens dein Guthaben." in german, german
    page = save_bank(s, donate="part", donation="19.00")
    assert page.status == 303, page.messages()
    english, german = visible(s.get("/portal/payout", headers=EN)), visible(s.get("/portal/payout", headers=DE))
    assert "What is left after your donation is not above the payout fee of €1.50: donate everything or a smaller " \
        "part." in english, english
    assert "Was nach deiner Spende übrig bleibt, liegt nicht über der Auszahlungsgebühr von 1,50 €" in german
    assert "Your balance is not above the payout fee" not in english and "at most your balance" not in english


def test_the_payout_deadline_passed(db, site, world):
    s = signed_in(site, world, "A")  # no bank data
    try:
        db.execute("UPDATE ledger.event SET payout_deadline = now() + interval '1 day' WHERE id = %s",
                   (world["event_id"],))
        page = s.get("/portal/payout", headers=EN)
        assert "Please ask for your payout by" in visible(page) and 'data-passed' not in page.text
        db.execute("UPDATE ledger.event SET payout_deadline = now() - interval '1 hour' WHERE id = %s",
                   (world["event_id"],))
        english, german = visible(s.get("/portal/payout", headers=EN)), visible(s.get("/portal/payout", headers=DE))
        assert "Please ask for your payout by" not in english
        passed = (r"The payout deadline, .+, has passed: the festival may now donate the balances that are not ready "
                  r"for a payout\. Until it does, you can still enter your bank data here")
        assert re.search(passed, english), english
        assert "Die Auszahlungsfrist" in german and "ist abgelaufen" in german
        assert 'name="iban"' in s.get("/portal/payout").text  # the form is still there
    finally:
        db.execute("UPDATE ledger.event SET payout_deadline = NULL WHERE id = %s", (world["event_id"],))


def test_a_run_that_donates_everything(db, site, online, world):
    """R donates everything: while its run is open its money is held and top-ups are refused; once the run is done
    the payout page thanks it and the wristband reads as paid out (X, blocked by support, still as blocked)."""
    r = signed_in(site, world, "R")
    token = scalar(db, "SELECT token FROM api.admin_sign_in(%s, %s)", (FINANCE, PASSWORD))
    run = scalar(db, "SELECT api.admin_payout_run_create(%s, 1, 100000, current_date + 2)", (token,))
    payout = scalar(db, "SELECT api.portal_payout(%s)", (r.cookies["festpay_portal"],))
    assert payout["status"] == "in-run" and payout["run"]["amount"] == 0, payout
    assert "In a payout run: your balance is donated when the run is done." in visible(
        r.get("/portal/payout", headers=EN))
    balance = r.get("/portal/", headers=EN)
    assert re.search(r'Held \(purchases under way, payout run\)</dt><dd data-money="held">€20\.00<', balance.text)
    assert "Reserviert (laufende Käufe, Auszahlungslauf)" in r.get("/portal/", headers=DE).text
    on_line = Session(online.port, cookies=dict(r.cookies))
    page = top_up(on_line, "20", EN)
    assert page.status == 409 and amount_error(page) == "Your payout is in a payout run, so you cannot top up now."
    assert amount_error(top_up(on_line, "20", DE)) == (
        "Deine Auszahlung ist in einem Auszahlungslauf, deshalb kannst du gerade nicht aufladen.")
    assert checkouts(db, world, "R") == 0
    db.execute("SELECT api.admin_payout_run_done(%s, %s)", (token, run))
    assert visible(r.get("/portal/payout", headers=EN)).count("Done: your balance was donated. Thank you!") == 1
    assert "Erledigt: Dein Guthaben wurde gespendet. Danke!" in visible(r.get("/portal/payout", headers=DE))
    for path in ("/portal/", "/portal/block"):
        english, german = visible(r.get(path, headers=EN)), visible(r.get(path, headers=DE))
        assert "Paid out: this wristband is closed." in english and "blocked" not in english, (path, english)
        assert "Ausgezahlt: Dieses Armband ist abgeschlossen." in german and "gesperrt" not in german, (path, german)
    x = signed_in(site, world, "X")
    english = visible(x.get("/portal/", headers=EN))
    assert "This wristband is blocked" in english and "Paid out" not in english


# ----------------------------------------------------------------------------- privacy: payout data


def test_privacy_page_names_the_payout_data(site, world):
    s = signed_in(site, world, "P")
    english, german = visible(s.get("/portal/privacy", headers=EN)), visible(s.get("/portal/privacy", headers=DE))
    assert "Your wristband is linked to your name only if you give bank data for a payout." in english, english
    assert "not linked to your name" not in english
    assert "the IBAN, the account holder and the e-mail address you give for a payout" in english
    assert "They are kept until 90 days after your payout is done, then erased" in english
    assert "You have not given any." in english
    assert "Sie werden bis 90 Tage nach deiner Auszahlung aufbewahrt und dann gelöscht" in german, german
    assert save_bank(s, holder="Paula Pohl", email="paula@example.org").status == 303
    english = visible(s.get("/portal/privacy", headers=EN))
    assert "Your wristband is linked to your name because you gave bank data for a payout." in english, english
    assert "only if you give" not in english and "You have not given any." not in english
    assert "Dein Armband ist mit deinem Namen verknüpft, weil du Bankdaten" in visible(
        s.get("/portal/privacy", headers=DE))
    assert json.loads(s.get("/portal/privacy?format=json").text)["payout"]["retention_days"] == 90


# ----------------------------------------------------------------------------- rate limit


def test_sign_in_rate_limit_per_address(pg_cluster, world):
    """Only failed sign-ins count: many visitors behind one address sign in; three wrong PINs lock the address."""
    gw = start_admin_gateway(pg_cluster, dbname=DBNAME, apps=APPS, portal_login_attempts=3,
                             portal_login_window_s=300)
    try:
        a = world["tags"]["A"]
        for name in ("A", "B", "C", "A", "B"):
            tag = world["tags"][name]
            assert Session(gw.port).portal_login(tag["uid"], tag["pin"]).status == 303, name
        s = Session(gw.port)
        for _ in range(3):
            assert s.portal_login(a["uid"], "0000").status == 401
        page = s.portal_login(a["uid"], a["pin"], headers=EN)
        assert page.status == 429 and "Too many sign-in attempts" in page.text
        assert "Please wait 5 minutes and try again." in visible(page), visible(page)
        assert 0 < int(page.header("Retry-After")) <= 300
        assert "festpay_portal" not in s.cookies
        assert "Zu viele Anmeldeversuche" in Session(gw.port).portal_login(a["uid"], a["pin"], headers=DE).text
    finally:
        gw.stop()


def test_the_wait_is_said_in_the_singular_for_one_minute(pg_cluster, world):
    gw = start_admin_gateway(pg_cluster, dbname=DBNAME, apps=APPS, portal_login_attempts=1,
                             portal_login_window_s=60)
    try:
        a = world["tags"]["A"]
        assert Session(gw.port).portal_login(a["uid"], "0000").status == 401
        english = visible(Session(gw.port).portal_login(a["uid"], a["pin"], headers=EN))
        german = visible(Session(gw.port).portal_login(a["uid"], a["pin"], headers=DE))
        assert "Please wait 1 minute and try again." in english, english
        assert "Bitte warte 1 Minute und versuche es dann noch einmal." in german, german
    finally:
        gw.stop()


def test_attempt_limiter_window_slides():
    now = [0.0]
    limiter = AttemptLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.hit("x") is None and limiter.hit("x") is None
    assert limiter.hit("x") == 10.0 and limiter.hit("y") is None
    now[0] = 10.0
    assert limiter.hit("x") is None


def test_attempt_limiter_forgives_a_success():
    limiter = AttemptLimiter(2, 10.0, clock=lambda: 0.0)
    for _ in range(5):  # five successful sign-ins
        assert limiter.hit("x") is None
        limiter.forgive("x")
    assert limiter.hit("x") is None and limiter.hit("x") is None  # two failures
    assert limiter.hit("x") == 10.0


# ----------------------------------------------------------------------------- catalogues


def test_german_catalogue_is_complete_and_current():
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parent.parent
    method_map = [("python_gateway/portal/**.py", "python"), ("templates/portal/**.html", "jinja2")]
    options = {"templates/portal/**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}}
    extracted = {m[2] for m in extract_from_dir(str(root), method_map, options)}  # a plural: (singular, plural)
    with (root / "python_gateway/portal/locale/de/LC_MESSAGES/messages.po").open("rb") as f:
        catalog = read_po(f)
    ids = {m.id for m in catalog if m.id}
    assert extracted == ids, (extracted - ids, ids - extracted)
    assert any(isinstance(i, tuple) for i in ids)  # the plural forms are checked too

    def translated(m) -> bool:  # noqa: ANN001
        return all(m.string) if isinstance(m.string, tuple) else bool(m.string)

    assert not [m.id for m in catalog if m.id and (not translated(m) or m.fuzzy)]
