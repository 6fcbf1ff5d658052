"""The customer portal and the payout run in real headless Chromium: a visitor's story from sign-in to the payout.

Debian's chromium through Debian's chromium-driver (tests/browser.py), against a real gateway serving the portal, the
admin site and the provider's webhook (tests/gateway_server.start_admin_gateway), the simulated payment provider as
its own process (``festpay provider-sim``), on a database of its own.

The story: a visitor signs in at a phone's width with the wristband's UID and PIN, switches to German, tops up
20,00 EUR through the provider's hosted checkout and sees the balance; enters an IBAN and donates 1,00 EUR; finance
creates a payout run, downloads the SEPA file (checked against the pain.001 schema) and the CSV, and marks the run
done; the visitor's balance is then 0,00 EUR and the wristband is closed; ``api.check_invariants()`` is empty after
every step that moves money.  Every page is saved as screenshots/portal-*.png and screenshots/admin-payout*.png.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from selenium.webdriver.common.by import By

from python_gateway.provider.http_client import HttpProvider
from python_gateway.sepa import sepa_summary, validate_pain001
from tests import gateway_server as gs
from tests.browser import Browser, Pages, browser  # noqa: F401  (pytest fixture)
from tests.child_process import provider_sim
from tests.conftest import own_database

DBNAME = "festpay_portal_browser"
SECRET = "portal-browser-provider-secret"
UID, PIN = "04A1B2C3D4E5F6", "4711"
FINANCE, PASSWORD = "finance-lead", "finance-password-1"
IBAN = "DE89370400440532013000"
PHONE = (390, 844)
DESKTOP = (1280, 900)
FEE = 50          # the event's payout fee, cents


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The simulated payment provider, its own process on a free port."""
    with provider_sim(SECRET) as url:
        yield url


@pytest.fixture(scope="module")
def owner(pg_cluster) -> Iterator[psycopg.Connection]:
    """A database of its own, migrated; a superuser connection (autocommit) to it."""
    with own_database(pg_cluster, DBNAME) as conn:
        yield conn


@pytest.fixture(scope="module")
def event_id(owner: psycopg.Connection) -> int:
    """The event as a DBA makes it (payout fee, the festival's bank account), the visitor's wristband with its PIN,
    and a finance user."""
    event = gs.scalar(owner, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_payout_fee => %s)",
                      (f"Portal Festival {secrets.token_hex(3)}", FEE))
    owner.execute("SELECT api.set_seller(%s, 'Festwiese GmbH', 'Festwiese 1', '12345', 'Musterstadt', "
                  "'12/345/67890', 'DE123456789')", (event,))
    owner.execute("UPDATE ledger.event SET payout_debtor_name = 'Festwiese GmbH', "
                  "payout_debtor_iban = 'DE02120300000000202051', payout_debtor_bic = 'BYLADEM1001' WHERE id = %s",
                  (event,))
    owner.execute("SELECT api.create_tag(%s, %s, %s)", (event, UID, PIN))
    owner.execute("SELECT api.create_admin_user(%s, 'finance', %s)", (FINANCE, PASSWORD))
    return event


@pytest.fixture(scope="module")
def site(pg_cluster, owner: psycopg.Connection, sim_url: str) -> Iterator[gs.RunningGateway]:
    provider = HttpProvider(sim_url, SECRET, timeout=5)
    with gs.start_admin_gateway(pg_cluster, DBNAME, apps=("terminal", "admin", "portal"), provider=provider) as gateway:
        provider.webhook_url = gateway.base_url + "/provider/webhook"
        yield gateway


def one(owner: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    row = owner.execute(query, params).fetchone()
    assert row is not None, query
    return row


def invariants(owner: psycopg.Connection) -> None:
    assert owner.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def balance(owner: psycopg.Connection) -> int:
    return one(owner, "SELECT a.balance FROM ledger.tag t JOIN ledger.account a ON a.id = t.account_id "
                      "WHERE t.uid = %s", (UID,))[0]


def test_visitor_tops_up_and_is_paid_out(browser: Browser, site: gs.RunningGateway, owner: psycopg.Connection,
                                         event_id: int, sim_url: str):
    d = browser.driver
    visitor = Pages(browser, site.base_url, "Festpay", "portal")
    d.set_window_size(*PHONE)

    # ---- sign in with the wristband's number and PIN, on a phone
    visitor.open("/portal/")
    assert d.find_elements(By.ID, "uid"), "a page of the portal without a session shows the sign-in form"
    visitor.shot("login")
    visitor.fill({"uid": UID.lower(), "pin": PIN})
    visitor.submit(visitor.form_of("uid"))
    assert visitor.overflow() == 0

    # ---- German, by the switch on every page
    visitor.follow(lambda: d.find_element(By.CSS_SELECTOR, "nav.languages a[lang=de]"), "the portal in German")
    assert d.find_element(By.TAG_NAME, "h1").text == "Guthaben"
    assert visitor.text("[data-money=available]") == "0,00 €"
    visitor.shot("balance-empty")

    # ---- top up 20,00 EUR: the hosted checkout of the provider, then back to a page that waits for the answer
    visitor.open("/portal/topup", "topup")
    visitor.fill({"amount": "20,00"})
    mark = visitor.mark_page()
    d.find_element(By.ID, "pay").click()
    visitor.wait_for_next_page(mark, "the provider's hosted checkout")
    assert d.current_url.startswith(sim_url + "/checkout/co_"), d.current_url
    browser.screenshot("portal-provider-checkout")
    mark = visitor.mark_page()
    d.find_element(By.ID, "pay").click()
    visitor.wait_for_next_page(mark, "back at the portal")
    assert "/portal/topup/ft_" in d.current_url, d.current_url
    visitor.wait(lambda drv: drv.find_element(By.CSS_SELECTOR, "[data-status]").get_attribute("data-status") == "paid",
                 "the top-up confirmed by the provider's webhook", timeout=20)
    visitor.shot("topup-paid")
    assert balance(owner) == 2000
    invariants(owner)
    visitor.open("/portal/", "balance")
    assert visitor.text("[data-money=available]") == "20,00 €"
    assert visitor.overflow() == 0

    # ---- bank data and a donation of 1,00 EUR; a mistyped IBAN is refused next to its field, nothing saved
    visitor.open("/portal/payout", "payout")
    assert visitor.text("#payout-status"), "where the payout stands"

    def bank_form(iban: str) -> None:
        visitor.fill({"bank-iban": iban, "bank-holder": "Erika Müller", "bank-email": "erika@example.org"})
        d.find_element(By.ID, "bank-donate-part").click()
        visitor.fill({"bank-donation": "1,00"})
        mark = visitor.mark_page()
        visitor.form_of("bank-iban").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        visitor.wait_for_next_page(mark, "the payout page after saving")
        visitor.page_ok("the payout page after saving")

    bank_form("DE89 3704 0044 0532 0130 01")                       # one digit wrong: the check digits say so
    assert d.find_element(By.ID, "bank-iban-error").text, "the IBAN's error next to its field"
    assert d.find_element(By.ID, "bank-holder").get_attribute("value") == "Erika Müller", "typed values kept"
    assert one(owner, "SELECT count(*) FROM ledger.payout_bank")[0] == 0
    visitor.shot("payout-iban-error")
    bank_form("DE89 3704 0044 0532 0130 00")
    assert not d.find_elements(By.CSS_SELECTOR, ".field-error, .form-error")
    assert d.find_element(By.ID, "payout-status").get_attribute("data-status") == "requested"
    assert visitor.text("[data-money=transfer]") == "18,50 €"   # 20,00 - 1,00 donated - 0,50 fee
    assert visitor.text("[data-money=donation]") == "1,00 €"
    assert d.find_element(By.ID, "bank-donation").get_attribute("value") == "1,00", "the saved donation, in German"
    assert one(owner, "SELECT iban, holder, donate, donation FROM ledger.payout_bank") == (
        IBAN, "Erika Müller", "part", 100)
    visitor.shot("payout-saved")
    assert visitor.overflow() == 0

    # ---- finance: a payout run, its SEPA file and CSV, then done
    d.set_window_size(*DESKTOP)
    finance = Pages(browser, site.base_url, "Festpay admin", "admin")
    finance.open("/admin/payouts")
    finance.fill({"username": FINANCE, "password": PASSWORD})
    finance.submit(finance.form_of("username"))
    finance.open("/admin/payouts", "payouts")
    assert finance.text("#eligible-count") == "1"
    execution = date.today() + timedelta(days=2)
    finance.fill({"create-max_count": "100", "create-max_sum": "1000.00"})
    d.execute_script("arguments[0].value = arguments[1];", d.find_element(By.ID, "create-execution_date"),
                     execution.isoformat())
    finance.submit(finance.form_of("create-max_count"))
    run_id = one(owner, "SELECT max(id) FROM ledger.payout_run")[0]
    assert d.current_url.split("?")[0].endswith(f"/admin/payouts/{run_id}"), d.current_url
    assert finance.text("#run-state") == "open"
    finance.shot("payout-run")
    assert balance(owner) == 2000                                   # held for the run until it is done
    assert one(owner, "SELECT held FROM ledger.account a JOIN ledger.tag t ON t.account_id = a.id "
                      "WHERE t.uid = %s", (UID,))[0] == 2000
    invariants(owner)

    before = browser.downloaded()
    d.find_element(By.ID, "download-sepa").click()
    xml = browser.wait_for_download(".xml", before).read_bytes()
    validate_pain001(xml)                                           # against the pain.001.001.03 schema
    summary = sepa_summary(xml)
    assert (summary["count"], summary["sum"]) == (1, 1850), summary
    assert summary["execution_dates"] == [execution.isoformat()]
    assert summary["debtor_iban"] == "DE02120300000000202051"
    [transfer] = summary["transfers"]
    assert (transfer["iban"], transfer["amount"], transfer["name"]) == (IBAN, 1850, "Erika Mueller"), transfer
    before = browser.downloaded()
    d.find_element(By.ID, "download-csv").click()
    rows = list(csv.DictReader(io.StringIO(browser.wait_for_download(".csv", before).read_text(encoding="utf-8-sig"))))
    assert [(r["uid"], r["iban"], r["amount_cents"], r["fee_cents"], r["donation_cents"]) for r in rows] == [
        (UID, IBAN, "1850", str(FEE), "100")], rows

    finance.submit(lambda: d.find_element(By.CSS_SELECTOR, "form[action$='/done']"))
    finance.shot("payout-done-confirm")
    finance.submit(lambda: d.find_element(By.ID, "confirm-form"))
    assert finance.text("#run-state") == "done"
    finance.shot("payout-run-done")

    # ---- the visitor: nothing left, the wristband closed; the ledger agrees with itself
    d.set_window_size(*PHONE)
    visitor.open("/portal/", "balance-paid-out")
    assert visitor.text("[data-money=available]") == "0,00 €"
    assert balance(owner) == 0
    visitor.open("/portal/payout", "payout-done")
    assert d.find_element(By.ID, "payout-status").get_attribute("data-status") == "done"
    visitor.open("/portal/history", "history-paid-out")
    history = visitor.text("main")
    assert "Auszahlung" in history and "Spende" in history, history
    assert one(owner, "SELECT status::text FROM ledger.tag WHERE uid = %s", (UID,))[0] == "blocked"
    lines = owner.execute(
        "SELECT t.type::text, d.kind::text, b.amount FROM ledger.booking b JOIN ledger.transaction t "
        "ON t.id = b.transaction_id JOIN ledger.account d ON d.id = b.debit_account_id "
        "JOIN ledger.tag g ON g.account_id = b.credit_account_id WHERE g.uid = %s ORDER BY b.amount DESC",
        (UID,)).fetchall()
    assert lines == [("payout", "payout", 1850), ("donation", "donation", 100), ("payout", "fee", FEE)], lines
    invariants(owner)
