"""Payouts over real HTTP against a real gateway (terminal API, admin site and portal, both logged in as festpay_web),
in a database of its own (``festpay_payout_http``, migrated here; its event is the newest, so the admin site's).

- the event page takes the payout settings (countries, the festival's account; a wrong debtor IBAN next to its field);
- the portal: a wrong IBAN is refused next to the field in words (schwifty's reason) and nothing is saved; an IBAN
  of a country the event does not pay to is refused by the database, next to the field; bank data with no, a part
  or the whole balance donated is saved (POST -> redirect -> GET, "saved"); a visitor sees only their own data;
- finance creates a run, downloads its SEPA file (validated here again against the pain.001.001.03 schema, sums
  checked against the run) and its CSV, revokes it (the money is free again; the revoked run's page offers no
  downloads and its files are refused), creates another and marks it done (after a confirm step): the portal shows
  "done" and a balance of 0, the bank data read-only; every download of a run's SEPA file is the same file, before
  and after it is done; a "most transfers" beyond an SQL integer is refused next to its field, never a 500;
- a till's top-up for a tag in an open run is refused (payout-locked);
- support holds a tag's payout on the customer page; after the deadline finance donates the remaining balances
  (after a confirm step; "1 tag still holds", the form gone once nothing remains), money that reached a paid-out tag
  afterwards too; an admin erases the personal data of paid-out customers;
- viewer and support get 403 on the payout POSTs and downloads and change nothing; a POST without the CSRF token is
  refused and changes nothing.
"""

from __future__ import annotations

import csv
import html
import io
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import xmlschema

from python_gateway import sepa
from tests.conftest import own_database
from tests.gateway_server import PREFIX, Client, RunningGateway, register_terminal, scalar, start_admin_gateway
from tests.test_admin_http import PASSWORD, Page, Session, admin_session, portal_session

DBNAME = "festpay_payout_http"
APPS = ("terminal", "admin", "portal")
ROLES = ("admin", "finance", "support", "viewer")
INVALID = (400, 422)
EN = {"Accept-Language": "en-GB,en;q=0.9"}
DE = {"Accept-Language": "de-DE,de;q=0.9"}
FEE = 150
#: Each tag's PIN and top-up (cents).
TAGS = {"A": ("1111", 2000), "B": ("2222", 3000), "C": ("3333", 1500), "D": ("4444", 1000), "E": ("5555", 100),
        "F": ("6666", 2500)}
IBAN_A = "DE89 3704 0044 0532 0130 00"
IBAN_B = "AT611904300234573201"
IBAN_F = "NL91ABNA0417164300"
DEBTOR_IBAN = "DE02120300000000202051"


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
    """An event with a payout fee of 1.50, one admin user per role, and tags A-F topped up in cash."""
    event_id = scalar(db, "SELECT api.create_event(%s, 'EUR', 50000, 100, 25000, p_payout_fee => %s)",
                      (f"Payout HTTP {secrets.token_hex(3)}", FEE))
    scalar(db, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    users = {}
    for role in ROLES:
        scalar(db, "SELECT * FROM api.create_admin_user(%s, %s, %s)", (f"payout-{role}", role, PASSWORD))
        users[role] = f"payout-{role}"
    client = Client(site.port)
    till = register_terminal(db, client, event_id, "Top-up", "top-up till")
    tags = {}
    for n, (name, (pin, amount)) in enumerate(TAGS.items(), start=1):
        uid = secrets.token_hex(7).upper()
        scalar(db, "SELECT api.create_tag(%s, %s, %s)", (event_id, uid, pin))
        reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": n, "uid": uid, "amount": amount,
                                                 "payment": "cash"}, terminal=till)
        assert reply.status == 201, reply.raw
        tags[name] = {"uid": uid, "pin": pin, "amount": amount}
    return {"event_id": event_id, "users": users, "tags": tags}


@pytest.fixture(scope="module")
def admins(site, world) -> dict[str, Session]:
    """One signed-in admin-site browser per role."""
    return {role: admin_session(site.port, username) for role, username in world["users"].items()}


def visitor(site: RunningGateway, world: dict[str, Any], name: str) -> Session:
    """A portal browser signed in with tag ``name``."""
    tag = world["tags"][name]
    return portal_session(site.port, tag["uid"], tag["pin"])


@pytest.fixture(scope="module")
def visitors(site, world) -> dict[str, Session]:
    return {name: visitor(site, world, name) for name in world["tags"]}


def portal_payout(db, s: Session) -> dict[str, Any]:
    return scalar(db, "SELECT api.portal_payout(%s)", (s.cookies["festpay_portal"],))


def admin_payouts(db, admins: dict[str, Session]) -> dict[str, Any]:
    return scalar(db, "SELECT api.admin_payouts(%s)", (admins["finance"].session_token(),))


def event_form(page: Page) -> dict[str, str]:
    """The event settings form's fields and values, as a browser would send them back."""
    return dict(re.findall(r'<input id="event-[^"]+" name="([^"]+)" type="[^"]+" value="([^"]*)"', page.text))


def save_payout(s: Session, **fields: str) -> Page:
    form = {"form": "bank", "iban": "", "holder": "", "email": "", "donate": "none", "donation": "", **fields}
    return s.post("/portal/payout", form, csrf=s.csrf("/portal/payout"), headers=EN)


def execution_day(days: int = 2) -> str:
    return (datetime.now(ZoneInfo("Europe/Berlin")).date() + timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def configured(db, admins, world) -> dict[str, Any]:
    """The event's payout settings, set on /admin/event: countries DE, AT, NL and the festival's account."""
    s = admins["admin"]
    page = s.get("/admin/event")
    assert page.status == 200 and 'name="payout_countries"' in page.text, page.text[:3000]
    form = event_form(page)
    form.update(form="event", payout_countries="de, AT;NL", payout_debtor_name="Festival Kasse GmbH",
                payout_debtor_iban="DE02120300000000202052", payout_debtor_bic="BYLADEM1001", payout_deadline="")
    page = s.post("/admin/event", form, csrf=page.csrf())
    assert page.status in INVALID and 'id="event-payout_debtor_iban-error"' in page.text, page.messages()
    assert 'value="Festival Kasse GmbH"' in page.text  # the typed values come back
    form["payout_debtor_iban"] = DEBTOR_IBAN
    page = s.post("/admin/event", form, csrf=s.csrf("/admin/event"))
    assert page.status == 303 and page.location == "/admin/event?done=saved", page.messages()
    event = scalar(db, "SELECT api.admin_event(%s)", (s.session_token(),))
    assert event["payout_countries"] == ["DE", "AT", "NL"] and event["payout_debtor_iban"] == DEBTOR_IBAN
    assert event["payout_deadline"] is None
    page = s.get("/admin/event")
    assert 'name="payout_countries" type="text" value="DE, AT, NL"' in page.text
    return form


# ----------------------------------------------------------------------------- the portal


def test_payout_page_renders_in_both_languages(visitors, configured):
    s = visitors["A"]
    english, german = s.get("/portal/payout", headers=EN), s.get("/portal/payout", headers=DE)
    assert english.status == german.status == 200
    assert "Pay out my balance" in english.text and "Guthaben auszahlen" in german.text
    assert 'data-money="balance">€20.00<' in english.text and 'data-money="fee">€1.50<' in english.text
    assert 'data-status="none"' in english.text and "Your bank data is missing" in english.text
    assert "Deine Bankdaten fehlen" in german.text and "Germany, Austria, Netherlands" in english.text
    for field in ('name="iban"', 'name="holder"', 'name="email"', 'name="donate" type="radio" value="part"',
                  'name="donation"'):
        assert field in english.text, field


@pytest.mark.parametrize(("iban", "english", "german"), [
    ("DE89370400440532013001", "The check digits of this IBAN do not match", "Die Prüfziffern dieser IBAN"),
    ("DE89 3704 0044 0532 0130 0", "An IBAN of Germany has 22 characters; this one has 21.",
     "Eine IBAN aus Deutschland hat 22 Zeichen; diese hat 21."),
    ("QQ89370400440532013000", "An IBAN starts with a country code; QQ is none.", "QQ ist keiner"),
    ("DE89-3704", "only letters and digits", "nur aus Buchstaben und Ziffern"),
])
def test_a_wrong_iban_is_refused_next_to_the_field_and_nothing_is_saved(db, visitors, configured, iban, english,
                                                                        german):
    s = visitors["D"]
    form = {"form": "bank", "iban": iban, "holder": "Dora Dee", "email": "dora@example.org", "donate": "none",
            "donation": ""}
    for headers, text in ((EN, english), (DE, german)):
        page = s.post("/portal/payout", form, csrf=s.csrf("/portal/payout"), headers=headers)
        assert page.status in INVALID, (page.status, page.text[:2000])
        assert re.search(r'name="iban"[^>]*aria-invalid="true"', page.text), page.text[:4000]
        error = re.search(r'id="bank-iban-error">([^<]*)<', page.text)
        assert error and text in html.unescape(error.group(1)), (error and error.group(1), text)
        assert f'value="{html.escape(iban)}"' in page.text and 'value="Dora Dee"' in page.text
    assert portal_payout(db, s)["bank"] is None


def test_an_iban_of_a_country_the_event_does_not_pay_to_is_refused_by_the_database(db, visitors, configured):
    s = visitors["D"]
    page = save_payout(s, iban="GB82WEST12345698765432", holder="Dora Dee", email="dora@example.org")
    assert page.status in INVALID, page.text[:2000]
    error = re.search(r'id="bank-iban-error">([^<]*)<', page.text)
    assert error and "Payouts go only to accounts in these countries: Germany, Austria, Netherlands." in \
        html.unescape(error.group(1)), page.messages()
    assert portal_payout(db, s)["bank"] is None
    page = save_payout(s, iban=IBAN_A, holder="", email="dora@example.org")  # no holder for a transfer
    assert page.status in INVALID and 'id="bank-holder-error"' in page.text, page.messages()
    page = save_payout(s, iban=IBAN_A, holder="Dora", email="dora@example.org", donate="part", donation="0")
    assert page.status in INVALID and 'id="bank-donation-error"' in page.text, page.messages()
    assert portal_payout(db, s)["bank"] is None


def test_bank_data_with_none_part_or_all_donated_is_saved(db, visitors, configured):
    page = save_payout(visitors["A"], iban=IBAN_A.lower(), holder="Anna Müller", email="anna@example.org")
    assert page.status == 303 and page.location == "/portal/payout?done=saved", page.messages()
    page = visitors["A"].get(page.location, headers=EN)
    assert page.status == 200 and "Saved." in page.text and 'data-status="requested"' in page.text
    assert 'value="DE89370400440532013000"' in page.text and 'value="Anna Müller"' in page.text
    assert re.search(r'value="none" checked', page.text)
    page = save_payout(visitors["B"], iban=IBAN_B, holder="Bernd Berg", email="bernd@example.org", donate="part",
                       donation="5,00")
    assert page.status == 303, page.messages()
    page = save_payout(visitors["C"], email="clara@example.org", donate="all")  # no bank account needed
    assert page.status == 303, page.messages()
    page = save_payout(visitors["F"], iban=IBAN_F, holder="Fritz Feld", email="fritz@example.org")
    assert page.status == 303, page.messages()
    a, b, c = (portal_payout(db, visitors[n]) for n in "ABC")
    assert a["bank"]["iban"] == "DE89370400440532013000" and a["bank"]["donate"] == "none" and a["eligible"]
    assert b["bank"]["donate"] == "part" and b["bank"]["donation"] == 500 and b["eligible"]
    assert c["bank"]["donate"] == "all" and c["bank"]["iban"] is None and c["eligible"]
    page = visitors["B"].get("/portal/payout", headers=EN)
    assert re.search(r'value="part" checked', page.text) and 'name="donation" type="text" inputmode="decimal" ' \
        'value="5.00"' in page.text


def test_a_visitor_sees_only_their_own_payout_data(visitors, configured):
    page = visitors["B"].get("/portal/payout", headers=EN)
    assert "bernd@example.org" in page.text
    assert "anna@example.org" not in page.text and "DE89370400440532013000" not in page.text
    assert "Anna" not in page.text
    page = visitors["A"].get("/portal/payout", headers=EN)
    assert "anna@example.org" in page.text and "bernd@example.org" not in page.text and IBAN_B not in page.text


def test_portal_post_without_csrf_is_refused_and_changes_nothing(db, visitors, configured):
    s = visitors["A"]
    before = portal_payout(db, s)["bank"]
    form = {"iban": IBAN_B, "holder": "Mallory", "email": "m@example.org", "donate": "all", "donation": ""}
    for kwargs in ({"csrf": None}, {"csrf": "forged"}, {"csrf": s.csrf("/portal/payout"), "origin": None},
                   {"csrf": s.csrf("/portal/payout"), "origin": "http://evil.example"}):
        assert s.post("/portal/payout", form, **kwargs).status == 403, kwargs
    assert portal_payout(db, s)["bank"] == before


# ----------------------------------------------------------------------------- support: holding a payout


def test_support_holds_and_releases_a_payout(db, admins, visitors, world, configured):
    uid = world["tags"]["F"]["uid"]
    s = admins["support"]
    page = s.get(f"/admin/customers/{uid}")
    assert page.status == 200 and "fritz@example.org" in page.text and "Hold the payout" in page.text
    page = s.post(f"/admin/customers/{uid}/payout-block", {"form": "payout-block", "blocked": "true",
                                                            "reason": ""}, csrf=page.csrf())
    assert page.status in INVALID and 'id="payout-block-reason-error"' in page.text, page.messages()
    viewer = admins["viewer"]
    assert viewer.post(f"/admin/customers/{uid}/payout-block", {"blocked": "true", "reason": "x"},
                       csrf=viewer.csrf()).status == 403
    assert not portal_payout(db, visitors["F"]).get("reasons") or "blocked" not in portal_payout(db, visitors["F"])[
        "reasons"]
    page = s.post(f"/admin/customers/{uid}/payout-block", {"blocked": "true", "reason": "disputed"},
                  csrf=s.csrf())
    assert page.status == 303 and page.location == f"/admin/customers/{uid}?done=payout-blocked", page.messages()
    page = s.get(page.location)
    assert 'id="payout-on-hold"' in page.text and "Release the payout" in page.text
    f = portal_payout(db, visitors["F"])
    assert "blocked" in f["reasons"] and not f["eligible"]
    assert "Support has put your payout on hold" in visitors["F"].get("/portal/payout", headers=EN).text
    assert admin_payouts(db, admins)["waiting"].get("blocked") == 1
    page = s.post(f"/admin/customers/{uid}/payout-block", {"blocked": "false", "reason": "settled"}, csrf=s.csrf())
    assert page.status == 303 and portal_payout(db, visitors["F"])["eligible"]
    page = s.post(f"/admin/customers/{uid}/payout-block", {"blocked": "true", "reason": "hold until later"},
                  csrf=s.csrf())
    assert page.status == 303  # F stays on hold: the runs below take A, B, C only


# ----------------------------------------------------------------------------- roles and CSRF on the admin side


@pytest.mark.parametrize("role", ("support", "viewer"))
def test_without_the_finance_privilege_payouts_are_refused(db, admins, role, configured):
    s = admins[role]
    assert s.get("/admin/payouts").status == 403
    assert 'href="/admin/payouts"' not in s.get("/admin/").text
    token = s.csrf()
    runs = len(admin_payouts(db, admins)["runs"])
    page = s.post("/admin/payouts", {"max_count": "10", "max_sum": "1000.00", "execution_date": execution_day()},
                  csrf=token)
    assert page.status == 403
    for path in ("/admin/payouts/donate-remaining", "/admin/payouts/erase-personal-data"):
        assert s.post(path, {"reason": "x", "confirm": "yes"}, csrf=token).status == 403, path
    assert len(admin_payouts(db, admins)["runs"]) == runs


def test_finance_sees_the_payouts_page(admins, configured):
    page = admins["finance"].get("/admin/payouts")
    assert page.status == 200, page.text[:3000]
    assert 'href="/admin/payouts" aria-current="page"' in page.text
    assert 'name="max_count"' in page.text and 'name="execution_date"' in page.text
    assert "Erase personal data" not in page.text  # the privilege users only
    assert "Donate the remaining balances" not in page.text  # before the deadline
    assert "Erase personal data" in admins["admin"].get("/admin/payouts").text


def test_admin_post_without_csrf_creates_no_run(db, admins, configured):
    s = admins["finance"]
    runs = len(admin_payouts(db, admins)["runs"])
    form = {"max_count": "10", "max_sum": "1000.00", "execution_date": execution_day()}
    for kwargs in ({"csrf": None}, {"csrf": "x" * 43}, {"csrf": s.csrf(), "origin": "https://evil.example"}):
        assert s.post("/admin/payouts", form, **kwargs).status == 403, kwargs
    assert len(admin_payouts(db, admins)["runs"]) == runs


@pytest.mark.parametrize(("count", "message"), [
    ("99999999999", "Please enter a whole number up to 2,147,483,647."),
    ("2147483648", "Please enter a whole number up to 2,147,483,647."),
    ("-99999999999", "Please enter a whole number of at least -2,147,483,648."),
])
def test_a_count_beyond_an_integer_is_refused_next_to_its_field(db, admins, configured, count, message):
    s = admins["finance"]
    runs = len(admin_payouts(db, admins)["runs"])
    page = s.post("/admin/payouts", {"form": "create", "max_count": count, "max_sum": "1.00",
                                     "execution_date": execution_day()}, csrf=s.csrf("/admin/payouts"))
    assert page.status in INVALID and 'id="create-max_count-error"' in page.text, (page.status, page.messages())
    assert message in html.unescape(page.text), page.messages()
    assert len(admin_payouts(db, admins)["runs"]) == runs


def test_the_largest_count_reaches_the_database(db, admins, configured):
    """2,147,483,647 is an SQL integer: the database decides (here: the first payout is above the maximum sum)."""
    s = admins["finance"]
    runs = len(admin_payouts(db, admins)["runs"])
    page = s.post("/admin/payouts", {"form": "create", "max_count": "2147483647", "max_sum": "1.00",
                                     "execution_date": execution_day()}, csrf=s.csrf("/admin/payouts"))
    assert page.status == 409 and any("above the maximum sum" in m for m in page.messages()), \
        (page.status, page.messages())
    assert len(admin_payouts(db, admins)["runs"]) == runs


# ----------------------------------------------------------------------------- runs


def create_run(s: Session, max_count: int, max_sum: str) -> int:
    page = s.post("/admin/payouts", {"form": "create", "max_count": str(max_count), "max_sum": max_sum,
                                     "execution_date": execution_day()}, csrf=s.csrf("/admin/payouts"))
    assert page.status == 303, (page.status, page.messages())
    match = re.fullmatch(r"/admin/payouts/(\d+)\?done=created", page.location)
    assert match, page.location
    return int(match.group(1))


def check_sepa(page: Page, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The downloaded SEPA file: an attachment that validates against the schema and holds the run's transfers."""
    assert page.status == 200, page.text[:2000]
    assert page.header("Content-Type").startswith("application/xml")
    disposition = page.header("Content-Disposition")
    assert disposition.startswith('attachment; filename="payout-run-') and disposition.endswith('.xml"'), disposition
    schema = xmlschema.XMLSchema(str(sepa.XSD))
    schema.validate(page.text)
    summary = sepa.sepa_summary(page.body)
    transfers = [line for line in lines if line["amount"] > 0]
    assert summary["count"] == len(transfers)
    assert summary["sum"] == sum(line["amount"] for line in transfers)
    assert summary["debtor_iban"] == DEBTOR_IBAN
    assert sorted((t["end_to_end_id"], t["iban"], t["amount"]) for t in summary["transfers"]) == sorted(
        (line["end_to_end_id"], line["iban"], line["amount"]) for line in transfers)
    return summary


def test_run_create_download_revoke(db, site, admins, visitors, world, configured):
    s = admins["finance"]
    page = s.get("/admin/payouts")
    assert 'id="eligible-count">3<' in page.text, page.text[:4000]  # A, B, C (F is on hold, D has no bank data)
    page = s.post("/admin/payouts", {"form": "create", "max_count": "2", "max_sum": "100.00",
                                     "execution_date": "2020-01-01"}, csrf=page.csrf())
    assert page.status in INVALID and 'id="create-execution_date-error"' in page.text, page.messages()
    run = create_run(s, 2, "100.00")  # the two oldest bank data: A and B
    page = s.get(f"/admin/payouts/{run}")
    assert page.status == 200 and 'id="run-state">open<' in page.text, page.text[:3000]
    assert 'id="download-sepa"' in page.text and 'id="download-csv"' in page.text
    document = scalar(db, "SELECT api.admin_payout_run(%s, %s)", (s.session_token(), run))
    lines = document["lines"]
    assert {line["uid"] for line in lines} == {world["tags"]["A"]["uid"], world["tags"]["B"]["uid"]}
    by_uid = {line["uid"]: line for line in lines}
    assert by_uid[world["tags"]["A"]["uid"]]["amount"] == 2000 - FEE
    assert (by_uid[world["tags"]["B"]["uid"]]["amount"], by_uid[world["tags"]["B"]["uid"]]["donation"]) == \
        (3000 - FEE - 500, 500)
    for line in lines:
        assert line["uid"] in page.text and line["end_to_end_id"] in page.text
    # the bank data is locked while the tag is in the run
    a = visitors["A"]
    payout = portal_payout(db, a)
    assert payout["locked"] and payout["status"] == "in-run" and payout["run"]["id"] == run
    page = a.get("/portal/payout", headers=EN)
    assert 'data-status="in-run"' in page.text and 'id="payout-locked"' in page.text and 'name="iban"' not in page.text
    assert "DE89370400440532013000" in page.text  # shown read-only
    page = save_payout(a, iban=IBAN_B, holder="Someone Else", email="anna@example.org")
    assert page.status == 409 and "locked" in " ".join(page.messages()), (page.status, page.messages())
    assert portal_payout(db, a)["bank"]["iban"] == "DE89370400440532013000"
    # no money reaches a tag in an open run: its transfer is fixed (the tag is closed when the run is done)
    client = Client(site.port)
    till = register_terminal(db, client, world["event_id"], "Top-up", "till during the run")
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": 1, "uid": world["tags"]["A"]["uid"],
                                             "amount": 500, "payment": "cash"}, terminal=till)
    reply.problem("payout-locked", 409)
    assert portal_payout(db, a)["balance"] == 2000
    # the downloads: finance only, audited
    exports = scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'payout.export'")
    for role in ("support", "viewer"):
        for tail in ("sepa.xml", "payouts.csv"):
            assert admins[role].get(f"/admin/payouts/{run}/{tail}").status == 403, (role, tail)
        assert admins[role].get(f"/admin/payouts/{run}").status == 403
    assert scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'payout.export'") == exports
    check_sepa(s.get(f"/admin/payouts/{run}/sepa.xml"), lines)
    page = s.get(f"/admin/payouts/{run}/payouts.csv")
    assert page.status == 200 and page.header("Content-Type").startswith("text/csv")
    assert page.header("Content-Disposition").startswith('attachment; filename="payout-run-')
    rows = list(csv.DictReader(io.StringIO(page.text)))
    assert {r["uid"] for r in rows} == set(by_uid)
    assert sum(int(r["amount_cents"]) for r in rows) == sum(line["amount"] for line in lines)
    row_a = next(r for r in rows if r["uid"] == world["tags"]["A"]["uid"])
    assert row_a["amount_eur"] == "18.50" and row_a["holder"] == "Anna Müller" and row_a["email"] == "anna@example.org"
    assert scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'payout.export'") == exports + 2
    # revoking: refused for viewer and support, needs a reason, then frees the money
    for role in ("support", "viewer"):
        r = admins[role]
        assert r.post(f"/admin/payouts/{run}/revoke", {"reason": "no"}, csrf=r.csrf()).status == 403
        assert r.post(f"/admin/payouts/{run}/done", {"confirm": "yes"}, csrf=r.csrf()).status == 403
    page = s.post(f"/admin/payouts/{run}/revoke", {"form": "revoke", "reason": ""}, csrf=s.csrf())
    assert page.status in INVALID and 'id="revoke-reason-error"' in page.text, page.messages()
    page = s.post(f"/admin/payouts/{run}/revoke", {"form": "revoke", "reason": "wrong execution date"},
                  csrf=s.csrf())
    assert page.status == 303 and page.location == f"/admin/payouts/{run}?done=revoked", page.messages()
    page = s.get(page.location)
    assert 'id="run-state">revoked<' in page.text and "wrong execution date" in page.text
    assert f'action="/admin/payouts/{run}/done"' not in page.text
    # a revoked run's money was released: no bank file, neither on the page nor by its address
    assert 'id="download-sepa"' not in page.text and 'id="download-csv"' not in page.text
    assert 'id="no-downloads"' in page.text
    exports = scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'payout.export'")
    for tail in ("sepa.xml", "payouts.csv"):
        page = s.get(f"/admin/payouts/{run}/{tail}")
        assert page.status == 409 and "revoked" in page.text and "<MsgId>" not in page.text, (tail, page.status)
    assert scalar(db, "SELECT count(*) FROM ledger.admin_audit WHERE action = 'payout.export'") == exports
    payout = portal_payout(db, a)
    assert not payout["locked"] and payout["status"] == "requested" and payout["available"] == 2000
    page = s.post(f"/admin/payouts/{run}/revoke", {"reason": "again"}, csrf=s.csrf())
    assert page.status == 409, page.status  # payout-run-closed


def test_run_done_pays_out_and_closes_the_tags(db, admins, visitors, world, configured):
    s = admins["finance"]
    run = create_run(s, 10, "1000.00")
    document = scalar(db, "SELECT api.admin_payout_run(%s, %s)", (s.session_token(), run))
    lines = document["lines"]
    assert {line["uid"] for line in lines} == {world["tags"][n]["uid"] for n in "ABC"}
    first = s.get(f"/admin/payouts/{run}/sepa.xml")
    summary = check_sepa(first, lines)
    assert summary["count"] == 2  # C donates everything: in the CSV, not in the bank file
    msg_id = re.search(rb"<MsgId>([^<]+)</MsgId>", first.body).group(1).decode()
    assert msg_id == f"FESTPAY-{world['event_id']}-RUN-{run}-" + msg_id.rsplit("-", 1)[1], msg_id
    assert s.get(f"/admin/payouts/{run}/sepa.xml").body == first.body  # a second download: the same file
    rows = list(csv.DictReader(io.StringIO(s.get(f"/admin/payouts/{run}/payouts.csv").text)))
    row_c = next(r for r in rows if r["uid"] == world["tags"]["C"]["uid"])
    assert (row_c["amount_eur"], row_c["donation_eur"], row_c["iban"]) == ("0.00", "15.00", "")
    # marking it done asks first; asking changes nothing
    page = s.post(f"/admin/payouts/{run}/done", {"form": "done"}, csrf=s.csrf())
    assert page.status == 200 and 'name="confirm" value="yes"' in page.text and "cannot be undone" in page.text
    assert scalar(db, "SELECT api.admin_payout_run(%s, %s)", (s.session_token(), run))["run"]["state"] == "open"
    page = s.post(f"/admin/payouts/{run}/done", {"form": "done", "confirm": "yes"}, csrf=page.csrf())
    assert page.status == 303 and page.location == f"/admin/payouts/{run}?done=paid", page.messages()
    page = s.get(page.location)
    assert 'id="run-state">done<' in page.text and "Revoke the run" not in page.text
    assert 'id="download-sepa"' in page.text  # a done run's file, for the records: still the same file
    assert s.get(f"/admin/payouts/{run}/sepa.xml").body == first.body
    for name in "ABC":
        payout = portal_payout(db, visitors[name])
        assert payout["status"] == "done" and payout["balance"] == 0 and payout["locked"], (name, payout)
    page = visitors["A"].get("/portal/payout", headers=EN)
    assert 'data-status="done"' in page.text and 'data-money="balance">€0.00<' in page.text
    assert 'name="iban"' not in page.text and "DE89370400440532013000" in page.text
    assert "Erledigt: Die Überweisung wurde" in visitors["A"].get("/portal/payout", headers=DE).text
    assert "Done: your balance was donated. Thank you!" in visitors["C"].get("/portal/payout", headers=EN).text
    assert scalar(db, "SELECT status::text FROM ledger.tag WHERE event_id = %s AND uid = %s",
                  (world["event_id"], world["tags"]["A"]["uid"])) == "blocked"
    page = visitors["A"].get("/portal/", headers=EN)  # closed by the run, not blocked as if lost
    assert 'id="paid-out"' in page.text and "Paid out: this wristband is closed." in page.text
    assert "Ask support for a new one" not in page.text
    page = s.post(f"/admin/payouts/{run}/revoke", {"reason": "too late"}, csrf=s.csrf())
    assert page.status == 409
    page = s.get("/admin/payouts")
    assert f'id="run-{run}"' in page.text and 'id="eligible-count">0<' in page.text


def test_a_run_of_nothing_eligible_is_refused(db, admins, configured):
    s = admins["finance"]
    runs = len(admin_payouts(db, admins)["runs"])
    page = s.post("/admin/payouts", {"form": "create", "max_count": "10", "max_sum": "1000.00",
                                     "execution_date": execution_day()}, csrf=s.csrf())
    assert page.status == 409 and page.messages(), (page.status, page.messages())
    assert len(admin_payouts(db, admins)["runs"]) == runs


# ----------------------------------------------------------------------------- after the deadline


def test_donate_remaining_after_the_deadline(db, admins, visitors, world, configured):
    s = admins["finance"]
    page = s.post("/admin/payouts/donate-remaining", {"form": "donate", "reason": "too early", "confirm": "yes"},
                  csrf=s.csrf())
    assert page.status == 409, (page.status, page.messages())
    # D (no bank data) and E (below the fee) remain; F's payout is on hold, so it is not donated
    remaining = admin_payouts(db, admins)["remaining"]
    assert remaining == {"count": 2, "sum": sum(world["tags"][n]["amount"] for n in "DE")}, remaining
    # the deadline passes (set on the event page)
    admin = admins["admin"]
    page = admin.get("/admin/event")
    an_hour_ago = datetime.now(ZoneInfo("Europe/Berlin")) - timedelta(hours=1)
    form = {**event_form(page), "form": "event", "payout_deadline": an_hour_ago.strftime("%Y-%m-%dT%H:%M")}
    assert admin.post("/admin/event", form, csrf=page.csrf()).status == 303
    page = s.get("/admin/payouts")
    assert "Donate the remaining balances" in page.text
    assert "2 tags still hold €11.00" in html.unescape(page.text), page.text[:4000]
    page = s.post("/admin/payouts/donate-remaining", {"form": "donate", "reason": "unclaimed after the deadline"},
                  csrf=page.csrf())
    assert page.status == 200 and 'name="confirm" value="yes"' in page.text, page.messages()
    assert admin_payouts(db, admins)["remaining"]["count"] == 2  # asking changed nothing
    audits = scalar(db, "SELECT count(*) FROM ledger.admin_audit")
    for role in ("support", "viewer"):
        r = admins[role]
        assert r.post("/admin/payouts/donate-remaining", {"reason": "x", "confirm": "yes"},
                      csrf=r.csrf()).status == 403
    page = s.post("/admin/payouts/donate-remaining", {"form": "donate", "reason": "unclaimed after the deadline",
                                                      "confirm": "yes"}, csrf=page.csrf())
    assert page.status == 303 and page.location.startswith("/admin/payouts?done=donated"), page.messages()
    page = s.get(page.location)
    assert "2 remaining balances donated, €11.00 in all." in page.text, page.text[:3000]
    assert admin_payouts(db, admins)["remaining"] == {"count": 0, "sum": 0}
    assert portal_payout(db, visitors["D"])["balance"] == 0 and portal_payout(db, visitors["E"])["balance"] == 0
    assert portal_payout(db, visitors["F"])["balance"] == world["tags"]["F"]["amount"]
    assert scalar(db, "SELECT count(*) FROM ledger.admin_audit") > audits
    assert "Donate the remaining balances" not in page.text and "still hold" not in page.text  # nothing remains
    # money that reaches a paid-out tag afterwards (unblocked by support, a friend transfers 2.00) is not lost
    a_uid = world["tags"]["A"]["uid"]
    scalar(db, "SELECT api.set_tag_blocked(%s, %s, false)", (world["event_id"], a_uid))
    db.execute("SELECT * FROM api.transfer(%s, %s, %s, 200)", (world["event_id"], world["tags"]["F"]["uid"], a_uid))
    assert admin_payouts(db, admins)["remaining"] == {"count": 1, "sum": 200}
    page = s.get("/admin/payouts")
    assert "1 tag still holds €2.00" in html.unescape(page.text), page.text[:4000]
    page = s.post("/admin/payouts/donate-remaining", {"form": "donate", "reason": "left on a paid-out tag",
                                                      "confirm": "yes"}, csrf=page.csrf())
    assert page.status == 303, page.messages()
    page = s.get(page.location)
    assert "1 remaining balance donated, €2.00 in all." in page.text
    assert "Donate the remaining balances" not in page.text
    assert portal_payout(db, visitors["A"])["balance"] == 0


def test_admin_erases_personal_data_of_paid_out_customers(db, admins, visitors, world, configured):
    admin = admins["admin"]
    page = admin.get("/admin/event")
    form = {**event_form(page), "form": "event", "payout_retention_days": "0"}
    assert admin.post("/admin/event", form, csrf=page.csrf()).status == 303
    finance = admins["finance"]
    assert finance.post("/admin/payouts/erase-personal-data", {"confirm": "yes"}, csrf=finance.csrf()).status == 403
    assert portal_payout(db, visitors["A"])["bank"]["iban"] == "DE89370400440532013000"
    page = admin.post("/admin/payouts/erase-personal-data", {"form": "erase"}, csrf=admin.csrf())
    assert page.status == 200 and 'name="confirm" value="yes"' in page.text
    page = admin.post("/admin/payouts/erase-personal-data", {"form": "erase", "confirm": "yes"}, csrf=page.csrf())
    assert page.status == 303 and page.location.startswith("/admin/payouts?done=erased&count="), page.messages()
    assert page.location.endswith("count=3")  # A, B, C: nobody else was paid out in a run
    bank = portal_payout(db, visitors["A"])["bank"]
    assert bank["iban"] is None and bank["holder"] is None and bank["email"] is None
    page = admin.get(f"/admin/customers/{world['tags']['A']['uid']}")
    assert page.status == 200 and "anna@example.org" not in page.text
    assert visitors["F"].get("/portal/payout").status == 200  # F was never paid out: untouched
    assert portal_payout(db, visitors["F"])["bank"]["iban"] == IBAN_F
